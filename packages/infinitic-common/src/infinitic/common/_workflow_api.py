"""The user API of workflow code, talking to the runtime through :class:`WorkflowRuntimeApi`.

The deterministic runtime lives in infinitic-workflow-engine; workflow code only sees stubs,
Deferreds and the functions of :mod:`infinitic.workflows`, which find the runtime of the method
run they execute in through a context variable.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable, Generator, Mapping
from contextvars import Context, ContextVar
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from infinitic.common._errors import (
    CommandOutsideWorkflowError,
    DeferredError,
    TaskCanceledError,
    TaskTimedOutError,
    WorkflowCanceledError,
    WorkflowTimedOutError,
    WorkflowUnknownError,
)

T = TypeVar("T")


class HasStatus:
    """The status queries every deferred of workflow code offers (from its ``status``)."""

    @property
    def status(self) -> str:
        raise NotImplementedError

    def is_ongoing(self) -> bool:
        """True while the result is not known yet."""
        return self.status == "ongoing"

    def is_completed(self) -> bool:
        """True once a result is there to be awaited."""
        return self.status == "completed"

    def is_failed(self) -> bool:
        return self.status == "failed"

    def is_canceled(self) -> bool:
        return self.status == "canceled"

    def is_timed_out(self) -> bool:
        return self.status == "timed_out"

    def is_unknown(self) -> bool:
        return self.status == "unknown"


class Deferred(HasStatus, asyncio.Future[T], Generic[T]):
    """The eventual result of a command of workflow code (a task, a child workflow, a timer).

    A Deferred is an asyncio future of the workflow's deterministic loop: await it, pass it to
    ``asyncio.gather``, ``all_of`` or ``any_of``. The command exists from the moment it was
    created, whether or not the Deferred is ever awaited. ``status`` and ``is_completed()``,
    ``is_ongoing()``, ``is_failed()``... tell where it stands at this point of the history.
    """

    def __init__(self, *, loop: asyncio.AbstractEventLoop, id: str, description: str) -> None:
        super().__init__(loop=loop)
        self._id = id
        self._description = description

    def _renew(self) -> None:
        """Make a settled Deferred ongoing again (the runtime does it at the step after
        ``retry_tasks`` ran its task again): awaits from then on wait for the new outcome, as
        in Infinitic; an ``all_of``/``any_of`` made before keeps what it saw.

        The instance becomes one of a subclass answering for a fresh inner future, so a
        Deferred that is never renewed pays nothing for it."""
        again: asyncio.Future[T] = self.get_loop().create_future()
        self.__class__ = _renewed_class(type(self))
        self._again = again

    @property
    def id(self) -> str:
        """The command id (for a child workflow: its workflow id)."""
        return self._id

    @property
    def status(self) -> str:
        """``ongoing``, ``completed``, ``failed``, ``canceled``, ``timed_out`` or ``unknown``,
        as seen at this point of the workflow's history."""
        if not self.done():
            return "ongoing"
        if self.cancelled():
            return "canceled"
        exc = self.exception()
        if exc is None:
            return "completed"
        if isinstance(exc, TaskCanceledError | WorkflowCanceledError):
            return "canceled"
        if isinstance(exc, TaskTimedOutError | WorkflowTimedOutError):
            return "timed_out"
        if isinstance(exc, WorkflowUnknownError):
            return "unknown"
        if isinstance(exc, DeferredError):
            return "failed"
        return "failed"

    def __repr__(self) -> str:
        return f"<Deferred {self._description} {self.status}>"


class _Renewed(Deferred[T]):
    """A Deferred renewed by a retry: every method of the future answers for ``_again``."""

    _again: asyncio.Future[T]

    def __await__(self) -> Generator[Any, None, T]:
        return self._again.__await__()

    __iter__ = __await__

    def done(self) -> bool:
        return self._again.done()

    def cancelled(self) -> bool:
        return self._again.cancelled()

    def result(self) -> T:
        return self._again.result()

    def exception(self) -> BaseException | None:
        return self._again.exception()

    def set_result(self, result: T) -> None:
        self._again.set_result(result)

    def set_exception(self, exception: type | BaseException) -> None:
        self._again.set_exception(exception)

    def cancel(self, msg: Any | None = None) -> bool:
        return self._again.cancel(msg)

    def add_done_callback(
        self, fn: Callable[[Any], object], /, *, context: Context | None = None
    ) -> None:
        self._again.add_done_callback(fn, context=context)

    def remove_done_callback(self, fn: Callable[[Any], object], /) -> int:
        return self._again.remove_done_callback(fn)

    def _renew(self) -> None:
        self._again = self.get_loop().create_future()


@functools.cache
def _renewed_class(cls: type[Deferred[Any]]) -> type[Deferred[Any]]:
    """The renewed form of a Deferred class (a subclass of both: ``isinstance`` still holds)."""
    if issubclass(cls, _Renewed):
        return cls
    return type(f"Renewed{cls.__name__}", (_Renewed, cls), {"__module__": cls.__module__})


class WorkflowRuntimeApi(Protocol):
    """What workflow code needs from the runtime (implemented by infinitic-workflow-engine)."""

    workflow_name: str
    workflow_id: str
    tags: frozenset[str]
    meta: Mapping[str, bytes]

    def current_method_name(self) -> str: ...

    def now(self) -> float: ...

    def new_task(
        self,
        service_name: str,
        method_name: str,
        args: list[Any],
        tags: frozenset[str],
        meta: Mapping[str, bytes],
        load_result: Callable[[Any], Any],
        timeout: float | None,
    ) -> Deferred[Any]: ...

    def new_child_workflow(
        self,
        workflow_name: str,
        method_name: str,
        args: list[Any],
        tags: frozenset[str],
        meta: Mapping[str, bytes],
        load_result: Callable[[Any], Any],
        timeout: float | None,
    ) -> Deferred[Any]: ...

    def new_timer(self, due_at: float) -> Deferred[datetime]: ...

    def inline(self, fn: Callable[[], Any]) -> Deferred[Any]: ...

    def new_receive(
        self, channel: Any, limit: int | None, type_name: str | None, filter: str | None
    ) -> Any: ...

    def new_signal(
        self,
        workflow_name: str,
        workflow_id: str | None,
        channel: Any,
        data: Any,
        type_names: list[str],
        tag: str | None = None,
    ) -> Deferred[None]: ...

    def new_method_call(
        self,
        workflow_name: str,
        workflow_id: str,
        method_name: str,
        args: list[Any],
        load_result: Callable[[Any], Any],
        timeout: float | None,
    ) -> Deferred[Any]: ...

    def new_method_dispatch_by_tag(
        self, workflow_name: str, tag: str, method_name: str, args: list[Any]
    ) -> Deferred[None]: ...

    def patched(self, patch_id: str) -> bool: ...

    def random(self) -> random.Random: ...

    @property
    def replaying(self) -> bool: ...


_runtime: ContextVar[WorkflowRuntimeApi | None] = ContextVar("infinitic_workflow", default=None)


def current_runtime(what: str = "this") -> WorkflowRuntimeApi:
    """Return the runtime of the workflow code being executed.

    Raises:
        CommandOutsideWorkflowError: not called from workflow code.
    """
    rt = _runtime.get()
    if rt is None:
        raise CommandOutsideWorkflowError(
            f"{what} can only be used inside workflow code (a method of a Workflow run by a "
            "worker); from application code use InfiniticClient"
        )
    return rt


def set_runtime(rt: WorkflowRuntimeApi | None) -> object:
    """Bind workflow code of the current context to ``rt`` (used by the runtime)."""
    return _runtime.set(rt)


def timer(when: timedelta | float | datetime) -> Deferred[datetime]:
    """Start a durable timer for a duration (timedelta or seconds) or until an instant.

    Returns a Deferred completed with the due instant; it survives crashes and redeploys.
    """
    rt = current_runtime("timer()")
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("timer(datetime) needs a timezone-aware datetime")
        due = when.timestamp()
    elif isinstance(when, timedelta):
        due = rt.now() + when.total_seconds()
    elif isinstance(when, int | float):
        due = rt.now() + float(when)
    else:
        raise TypeError(f"timer() expects a timedelta, seconds or a datetime, got {when!r}")
    return rt.new_timer(due)


def inline(fn: Callable[[], T]) -> Deferred[T]:
    """Run a side effect once and record its result; replays return the recorded value.

    The value must be JSON-compatible. Workflow commands (stub calls, timers) are refused inside.
    """
    return current_runtime("inline()").inline(fn)


def patched(patch_id: str) -> bool:
    """Mark an in-place change of workflow code: True for executions that reach this point with
    the new code, False when replaying a history recorded before the change existed.

    Example::

        if patched("send-receipt"):
            await self.emails.receipt(...)
    """
    return current_runtime("patched()").patched(patch_id)


def _items(items: tuple[Any, ...]) -> list[Any]:
    if len(items) == 1 and isinstance(items[0], list | tuple):
        return list(items[0])
    return list(items)


def _awaitable(item: Any) -> Awaitable[Any]:
    """A nested list is an all-of group whose result is the list of its results."""
    if isinstance(item, list | tuple):
        return asyncio.gather(*(_awaitable(i) for i in item))
    return item  # type: ignore[no-any-return]


def _settle(out: asyncio.Future[Any], f: asyncio.Future[Any]) -> None:
    if out.done():
        return
    if f.cancelled():
        out.cancel()
    elif (exc := f.exception()) is not None:
        out.set_exception(exc)
    else:
        out.set_result(f.result())


def all_of(*items: Awaitable[Any] | list[Any]) -> Deferred[list[Any]]:
    """Wait for every item (Deferreds, coroutines, nested lists); result: their results in the
    same shape (a nested list gives a nested list). ``all_of([a, b])`` is ``all_of(a, b)``.

    Returns a Deferred (with its ``status``); it fails with the first failure, like
    ``asyncio.gather``.
    """
    current_runtime("all_of()")
    inner = asyncio.gather(*(_awaitable(i) for i in _items(items)))
    out: Deferred[list[Any]] = Deferred(loop=inner.get_loop(), id="", description="all_of")
    inner.add_done_callback(lambda f: _settle(out, f))
    out.add_done_callback(lambda o: inner.cancel() if o.cancelled() else None)
    return out


def any_of(*items: Awaitable[Any] | list[Any]) -> Deferred[Any]:
    """Wait for the first item to complete; result: its result (or its failure). A nested list
    is an all-of group. ``any_of([a, b])`` is ``any_of(a, b)``.

    Returns a Deferred (with its ``status``). Deterministic: when several are already complete,
    the first in argument order wins.
    """
    current_runtime("any_of()")
    futures = [asyncio.ensure_future(_awaitable(f)) for f in _items(items)]
    if not futures:
        raise ValueError("any_of() needs at least one item")
    loop = futures[0].get_loop()
    out: Deferred[Any] = Deferred(loop=loop, id="", description="any_of")
    for f in futures:
        f.add_done_callback(functools.partial(_settle, out))
    return out
