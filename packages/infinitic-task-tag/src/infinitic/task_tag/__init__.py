"""Infinitic for Python: the service tag engine and delegated tasks."""

from infinitic.task_tag._engine import DelegatedTask, TaskTagEngine, delegated_key

__all__ = ["DelegatedTask", "TaskTagEngine", "delegated_key"]
