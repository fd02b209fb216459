"""Failures as data: what crosses process boundaries instead of exception objects."""

from __future__ import annotations

import sys
import traceback
from typing import Any

from pydantic import BaseModel, Field

from infinitic.common import _errors as err


class FailureInfo(BaseModel):
    """A failure, as JSON-compatible data.

    ``kind`` tells which exception to rebuild: ``remote`` for a user exception, or the name of an
    Infinitic error (``task_failed``, ``workflow_failed``, ...). The fields used depend on ``kind``.
    ``previous`` is, for the last attempt of a retried task, the failure of the attempt before.
    """

    kind: str
    class_name: str = ""
    message: str = ""
    stack: str = ""
    attributes: dict[str, Any] = Field(default_factory=dict)
    service_name: str | None = None
    workflow_name: str | None = None
    method_name: str | None = None
    id: str | None = None
    method_run_id: str | None = None
    position: str | None = None
    recorded: str | None = None
    found: str | None = None
    cause: FailureInfo | None = None
    previous: FailureInfo | None = None


def _json_attributes(exc: BaseException) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for key, value in vars(exc).items():
        if key.startswith("_"):
            continue
        if value is None or isinstance(value, str | int | float | bool):
            attrs[key] = value
        elif isinstance(value, list | tuple) and all(
            isinstance(v, str | int | float | bool) for v in value
        ):
            attrs[key] = list(value)
    return attrs


MAX_PREVIOUS_FAILURES = 10
"""How many earlier attempts a task failure keeps in its ``previous`` chain (the oldest go)."""


def failure_from_exception(exc: BaseException) -> FailureInfo:
    """Describe ``exc`` (its cause chain and its previous-attempt chain) as a FailureInfo."""
    info = _describe(exc)
    previous = getattr(exc, "previous", None)
    if isinstance(previous, BaseException):
        info.previous = failure_from_exception(previous)
    return info


def attempt_failure(exc: BaseException, previous: FailureInfo | None) -> FailureInfo:
    """The failure of a task attempt that raised ``exc``, after attempts that failed with
    ``previous`` (the chain of the attempt before; at most MAX_PREVIOUS_FAILURES kept)."""
    info = failure_from_exception(exc)
    info.previous = _truncated(previous, MAX_PREVIOUS_FAILURES)
    return info


def _truncated(info: FailureInfo | None, keep: int) -> FailureInfo | None:
    if info is None or keep <= 0:
        return None
    return info.model_copy(update={"previous": _truncated(info.previous, keep - 1)})


def method_failure(exc: BaseException, workflow_name: str, workflow_id: str) -> FailureInfo:
    """The failure of a workflow method whose code raised ``exc``.

    An error the code got from awaiting a task, a child or a timeout (a DeferredError) is the
    method's failure as is, as in Infinitic; any other exception was raised by the workflow code
    itself and becomes a ``workflow_task_failed`` failure with the exception as its cause.
    """
    if isinstance(exc, err.DeferredError):
        return failure_from_exception(exc)
    return FailureInfo(
        kind="workflow_task_failed",
        workflow_name=workflow_name,
        id=workflow_id,
        cause=failure_from_exception(exc),
    )


def public_class_name(cls: type) -> str:
    """The name users know ``cls`` by: its qualified name (bare for builtins), under the
    closest public package that exports it when its module is private.

    ``pkg._impl.Error`` exported by ``pkg`` is ``pkg.Error``; a class no public ancestor
    exports keeps its module's path.
    """
    if cls.__module__ == "builtins":
        return cls.__qualname__
    parts = cls.__module__.split(".")
    private = [i for i, part in enumerate(parts) if part.startswith("_")]
    if private:
        for end in range(private[0], 0, -1):
            package = ".".join(parts[:end])
            if getattr(sys.modules.get(package), cls.__qualname__, None) is cls:
                return f"{package}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(exc: BaseException) -> FailureInfo:
    cause_exc = getattr(exc, "cause", None) or exc.__cause__
    cause = failure_from_exception(cause_exc) if isinstance(cause_exc, BaseException) else None
    if isinstance(exc, err.TaskFailedError):
        return FailureInfo(
            kind="task_failed",
            service_name=exc.service_name,
            method_name=exc.method_name,
            id=exc.task_id,
            cause=cause,
        )
    if isinstance(exc, err.TaskTimedOutError):
        return FailureInfo(
            kind="task_timed_out",
            service_name=exc.service_name,
            method_name=exc.method_name,
            id=exc.task_id,
        )
    if isinstance(exc, err.TaskCanceledError):
        return FailureInfo(
            kind="task_canceled",
            service_name=exc.service_name,
            method_name=exc.method_name,
            id=exc.task_id,
        )
    for kind, cls in _WORKFLOW_KINDS.items():
        if type(exc) is cls:
            assert isinstance(exc, err._WorkflowMethodError)
            return FailureInfo(
                kind=kind,
                workflow_name=exc.workflow_name,
                id=exc.workflow_id,
                method_name=exc.method_name,
                method_run_id=exc.method_run_id,
                cause=cause,
            )
    if isinstance(exc, err.WorkflowTaskFailedError):
        return FailureInfo(
            kind="workflow_task_failed",
            workflow_name=exc.workflow_name,
            id=exc.workflow_id,
            cause=cause,
        )
    if isinstance(exc, err.WorkflowChangedError):
        return FailureInfo(
            kind="workflow_changed",
            workflow_name=exc.workflow_name,
            position=exc.position,
            recorded=exc.recorded,
            found=exc.found,
            message=str(exc),
        )
    if isinstance(exc, err.MessageDeadLetteredError):
        return FailureInfo(
            kind="dead_lettered", message=exc.reason, attributes={"topic": exc.topic}
        )
    if isinstance(exc, err.RemoteError):
        return FailureInfo(
            kind="remote",
            class_name=exc.class_name,
            message=exc.message,
            stack=exc.stack,
            attributes=exc.attributes,
            cause=cause,
        )
    return FailureInfo(
        kind="remote",
        class_name=public_class_name(type(exc)),
        message=str(exc),
        stack="".join(traceback.format_exception(exc)),
        attributes=_json_attributes(exc),
        cause=cause,
    )


_WORKFLOW_KINDS: dict[str, type[err._WorkflowMethodError]] = {
    "workflow_failed": err.WorkflowFailedError,
    "workflow_canceled": err.WorkflowCanceledError,
    "workflow_timed_out": err.WorkflowTimedOutError,
    "workflow_unknown": err.WorkflowUnknownError,
}


def exception_from_failure(info: FailureInfo) -> err.InfiniticError:
    """Rebuild the Infinitic exception described by ``info`` (with its ``previous`` chain)."""
    exc = _rebuild(info)
    if info.previous is not None:
        exc.previous = exception_from_failure(info.previous)
    return exc


def _rebuild(info: FailureInfo) -> err.InfiniticError:
    cause = exception_from_failure(info.cause) if info.cause is not None else None
    k = info.kind
    if k == "task_failed":
        return err.TaskFailedError(
            info.service_name or "?", info.method_name or "?", info.id or "?", cause
        )
    if k == "task_timed_out":
        return err.TaskTimedOutError(
            info.service_name or "?", info.method_name or "?", info.id or "?"
        )
    if k == "task_canceled":
        return err.TaskCanceledError(
            info.service_name or "?", info.method_name or "?", info.id or "?"
        )
    if k in _WORKFLOW_KINDS:
        return _WORKFLOW_KINDS[k](
            info.workflow_name or "?", info.id or "?", info.method_name, info.method_run_id, cause
        )
    if k == "workflow_task_failed":
        return err.WorkflowTaskFailedError(info.workflow_name or "?", info.id or "?", cause)
    if k == "workflow_changed":
        return err.WorkflowChangedError(
            info.workflow_name or "?", info.position or "?", info.recorded or "?", info.found or "?"
        )
    if k == "dead_lettered":
        return err.MessageDeadLetteredError(str(info.attributes.get("topic", "?")), info.message)
    return err.RemoteError(
        info.class_name or "Exception", info.message, info.stack, dict(info.attributes), cause
    )
