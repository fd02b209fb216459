"""The context of the task being executed, readable from service code."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field

from infinitic.common._errors import InfiniticError


@dataclass(frozen=True)
class TaskContext:
    """What a running task knows about itself.

    Attributes:
        task_id: stable across retries.
        retry_index: 0 for the first attempt, then 1, 2, ...
        retry_sequence: incremented each time the task is retried manually.
        workflow_id, workflow_name: the workflow that asked for the task, if any.
    """

    task_id: str
    service_name: str
    method_name: str
    retry_index: int = 0
    retry_sequence: int = 0
    tags: frozenset[str] = frozenset()
    meta: Mapping[str, bytes] = field(default_factory=dict)
    workflow_id: str | None = None
    workflow_name: str | None = None


_current_task: ContextVar[TaskContext | None] = ContextVar("infinitic_task_context", default=None)


def task_context() -> TaskContext:
    """Return the context of the task being executed.

    Raises:
        InfiniticError: called outside a task.
    """
    ctx = _current_task.get()
    if ctx is None:
        raise InfiniticError("task_context() can only be called while a service task runs")
    return ctx


def set_task_context(ctx: TaskContext | None) -> object:
    """Set the current task context (used by the task executor); returns a reset token."""
    return _current_task.set(ctx)
