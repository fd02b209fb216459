"""Infinitic for Python: ids, messages, topics, serialization, errors, retry policies and the user API (workflows, services, exceptions)."""

__all__: list[str] = []
