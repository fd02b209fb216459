"""Infinitic for Python: InfiniticWorker, configuration and the infinitic command line."""

__all__: list[str] = []
