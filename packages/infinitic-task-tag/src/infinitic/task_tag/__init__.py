"""Infinitic for Python: the service tag engine and delegated tasks."""

__all__: list[str] = []
