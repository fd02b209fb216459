"""Infinitic for Python: runs service tasks: retries, timeouts, batches."""

__all__: list[str] = []
