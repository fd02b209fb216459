"""The service-side API: declarations on service interfaces and implementations, and the task
context.

Example:
    >>> from infinitic.services import name, timeout
    >>> @name("Bank")
    ... class BankService:
    ...     @timeout(seconds=5)
    ...     async def withdraw(self, account: str, amount: int) -> None: ...
"""

from infinitic.common._declarations import batch, delegated, name, retry, timeout
from infinitic.common._retry import ExponentialBackoff, NoRetry, RetryPolicy
from infinitic.common._task_context import TaskContext, task_context

__all__ = [
    "ExponentialBackoff",
    "NoRetry",
    "RetryPolicy",
    "TaskContext",
    "batch",
    "delegated",
    "name",
    "retry",
    "task_context",
    "timeout",
]
