"""Infinitic for Python: InfiniticClient."""

__all__: list[str] = []
