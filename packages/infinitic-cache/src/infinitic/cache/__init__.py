"""Infinitic for Python: caches in front of storage."""

__all__: list[str] = []
