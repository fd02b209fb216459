"""Infinitic for Python: runs service tasks with retries and execution timeouts."""

from infinitic.task_executor._executor import (
    ServiceExecutor,
    TaskEventHandler,
    TaskRetryHandler,
    TaskTimeoutError,
)

__all__ = ["ServiceExecutor", "TaskEventHandler", "TaskRetryHandler", "TaskTimeoutError"]
