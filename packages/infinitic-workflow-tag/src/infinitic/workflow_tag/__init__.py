"""Infinitic for Python: the workflow tag engine: custom ids, by-tag fan-out."""

__all__: list[str] = []
