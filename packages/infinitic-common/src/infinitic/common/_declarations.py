"""Declarations on services and workflows: names, timeouts, retry policies, delegated, batch.

Decorators only set attributes; readers look them up on an implementation first, then on the
interface it implements.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from infinitic.common._retry import RetryPolicy
from infinitic.common._topics import check_entity_name

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")

_NAME = "__infinitic_name__"
_TIMEOUT = "__infinitic_timeout__"
_RETRY = "__infinitic_retry__"
_DELEGATED = "__infinitic_delegated__"
_BATCH = "__infinitic_batch__"


@dataclass(frozen=True)
class BatchSettings:
    """How a batched method groups its tasks."""

    max_messages: int
    max_seconds: float


def name(value: str) -> Callable[[C], C]:
    """Give a service, a workflow or a method the name it has on the wire.

    The name of a service or workflow is part of its topic names; by default it is the class name.
    """
    check_entity_name(value)

    def apply(target: C) -> C:
        setattr(target, _NAME, value)
        return target

    return apply


def timeout(*, seconds: float) -> Callable[[F], F]:
    """Declare a timeout on a method, or on a class for each of its methods (a method's own
    declaration wins).

    On an interface method: a caller-side timeout (the caller stops waiting and gets a timed-out
    error; the callee keeps running). On a workflow method: the same for a client's call that
    waits for the result (``WorkflowTimedOutError``; the workflow runs on). On an implementation
    method: an execution timeout (the attempt is abandoned and counts as a failure, so the
    retry policy applies), unless the worker's configuration sets one.
    """
    if seconds <= 0:
        raise ValueError(f"timeout seconds must be > 0, got {seconds}")

    def apply(fn: F) -> F:
        setattr(fn, _TIMEOUT, float(seconds))
        return fn

    return apply


def retry(policy: RetryPolicy) -> Callable[[C], C]:
    """Set the retry policy of a service implementation class or of one of its methods; on a
    workflow class or method, the retry policy of its workflow tasks (a failed workflow task is
    run again after the policy's delay; the worker's configuration wins, as in Infinitic)."""
    if not isinstance(policy, RetryPolicy):
        raise TypeError(f"retry() expects a RetryPolicy, got {type(policy).__name__}")

    def apply(target: C) -> C:
        setattr(target, _RETRY, policy)
        return target

    return apply


def delegated(fn: F) -> F:
    """Mark a service method as delegated: its result is given later with
    ``client.complete_delegated_task``."""
    setattr(fn, _DELEGATED, True)
    return fn


def batch(*, max_messages: int, max_seconds: float) -> Callable[[F], F]:
    """Mark a service method as batched: it receives up to ``max_messages`` tasks at once,
    waiting at most ``max_seconds`` to fill a batch."""
    if max_messages < 1 or max_seconds <= 0:
        raise ValueError("batch needs max_messages >= 1 and max_seconds > 0")

    def apply(fn: F) -> F:
        setattr(fn, _BATCH, BatchSettings(max_messages, max_seconds))
        return fn

    return apply


def entity_name(cls: type) -> str:
    """Return the wire name of a service interface or workflow class."""
    value = cls.__dict__.get(_NAME)
    if isinstance(value, str):
        return value
    for base in cls.__mro__[1:]:
        value = base.__dict__.get(_NAME)
        if isinstance(value, str):
            return value
    if _is_workflow(cls):
        return check_entity_name(_VERSION_SUFFIX.sub("", cls.__name__))
    return check_entity_name(cls.__name__)


_VERSION_SUFFIX = re.compile(r"_(\d+)$")


def _is_workflow(cls: type) -> bool:
    return any(
        b.__name__ == "Workflow" and b.__module__ == "infinitic.common._workflow"
        for b in cls.__mro__
    )


def workflow_version(cls: type) -> int:
    """Return the version of a workflow class: the number after a final ``_`` in its class name
    (``BankWorkflow_2`` is version 2 of ``BankWorkflow``), else 0."""
    match = _VERSION_SUFFIX.search(cls.__name__)
    return int(match.group(1)) if match else 0


def _lookup(owner: type | object, method: str, attr: str) -> Any:
    cls = owner if isinstance(owner, type) else type(owner)
    if isinstance(owner, type) or method not in getattr(owner, "__dict__", {}):
        return _class_lookup(cls, method, attr)  # declarations live on classes: cached
    fn = inspect.getattr_static(owner, method, None)
    fn = getattr(fn, "__func__", fn)
    return getattr(fn, attr, None)


@functools.lru_cache(maxsize=4096)
def _class_lookup(cls: type, method: str, attr: str) -> Any:
    fn = inspect.getattr_static(cls, method, None)
    fn = getattr(fn, "__func__", fn)
    return getattr(fn, attr, None)


def method_timeout(owner: type | object, method: str) -> float | None:
    """Return the timeout declared on ``owner.method``, or else on its class, if any."""
    value = _lookup(owner, method, _TIMEOUT)
    if value is None:
        value = getattr(owner if isinstance(owner, type) else type(owner), _TIMEOUT, None)
    return float(value) if value is not None else None


def retry_policy(implementation: object, method: str) -> RetryPolicy | None:
    """Return the retry policy declared on a method of ``implementation`` (an instance or a
    class), or on its class."""
    value = _lookup(implementation, method, _RETRY)
    if value is None:
        cls = implementation if isinstance(implementation, type) else type(implementation)
        value = getattr(cls, _RETRY, None)
    return value if isinstance(value, RetryPolicy) else None


def is_delegated(owner: type | object, method: str) -> bool:
    """True when ``owner.method`` is declared delegated."""
    return bool(_lookup(owner, method, _DELEGATED))


def batch_settings(owner: type | object, method: str) -> BatchSettings | None:
    """Return the batch settings of ``owner.method``, if it is batched."""
    value = _lookup(owner, method, _BATCH)
    return value if isinstance(value, BatchSettings) else None
