"""Infinitic for Python: workflow command handler, state engine, timers and the deterministic workflow runtime."""

__all__: list[str] = []
