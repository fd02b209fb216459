"""Infinitic for Python: the service tag engine and delegated tasks."""

import importlib.metadata

from infinitic.task_tag._engine import DelegatedTask, TaskTagEngine, delegated_key

__version__: str = importlib.metadata.version("infinitic-task-tag")

__all__ = ["DelegatedTask", "TaskTagEngine", "delegated_key"]
