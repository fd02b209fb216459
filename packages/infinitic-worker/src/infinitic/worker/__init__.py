"""Infinitic for Python: InfiniticWorker, which runs services and workflows."""

from infinitic.worker._worker import InfiniticWorker

__all__ = ["InfiniticWorker"]
