"""Infinitic for Python: runs service tasks with retries, execution timeouts, delegated and
batched methods."""

import importlib.metadata

from infinitic.task_executor._batch import BatchResultMissingError, TaskBatcher
from infinitic.task_executor._executor import (
    ServiceExecutor,
    TaskEventHandler,
    TaskRetryHandler,
    TaskTimeoutError,
)

__version__: str = importlib.metadata.version("infinitic-task-executor")

__all__ = [
    "BatchResultMissingError",
    "ServiceExecutor",
    "TaskBatcher",
    "TaskEventHandler",
    "TaskRetryHandler",
    "TaskTimeoutError",
]
