"""Infinitic for Python: the Apache Pulsar transport."""

__all__: list[str] = []
