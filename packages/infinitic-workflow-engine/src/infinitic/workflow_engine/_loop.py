"""A deterministic asyncio event loop for workflow code.

Ready callbacks run first in first out; ``time()`` is the instant of the current workflow task;
``call_at``/``call_later`` do not wait in memory but create durable timer commands, whose
callbacks run when the timer's completion is delivered. There is no I/O. The loop is driven by
:meth:`WorkflowEventLoop.run_until_idle`, which temporarily makes it the running loop of the
thread, so ``asyncio.get_running_loop()``, ``asyncio.sleep``, ``gather``, ``create_task`` and
``wait_for`` inside workflow code use it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from asyncio import events
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol, TypeVar

logger = logging.getLogger("infinitic.workflow")

T = TypeVar("T")


class TimerFactory(Protocol):
    def new_timer_handle(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        context: contextvars.Context | None,
    ) -> asyncio.TimerHandle: ...


class WorkflowEventLoop(asyncio.AbstractEventLoop):
    """The event loop of one workflow instance."""

    def __init__(self, timers: TimerFactory) -> None:
        self._ready: deque[asyncio.Handle] = deque()
        self._timers = timers
        self._now = 0.0
        self._closed = False
        self.errors: list[BaseException] = []

    # -- driving ------------------------------------------------------------------------------

    def set_time(self, instant: float) -> None:
        self._now = instant

    def run_until_idle(self) -> None:
        """Run ready callbacks until none is left."""
        previous = events._get_running_loop()
        events._set_running_loop(self)
        try:
            while self._ready:
                handle = self._ready.popleft()
                if not handle._cancelled:
                    handle._run()
        finally:
            events._set_running_loop(previous)

    def schedule(self, handle: asyncio.Handle) -> None:
        """Make ``handle`` ready (used when a durable timer completes)."""
        self._ready.append(handle)

    # -- the asyncio loop API used by asyncio itself ---------------------------------------------

    def time(self) -> float:
        return self._now

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        raise RuntimeError("workflow code cannot use threads")

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self._now + delay, callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self._timers.new_timer_handle(when, callback, args, context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, T] | Generator[Any, None, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return True

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._ready.clear()

    def get_exception_handler(self) -> None:
        return None

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.call_exception_handler(context)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = context.get("message", "")
        if "never retrieved" in message:
            return  # a failed Deferred nobody awaited: not an error of the workflow task
        if isinstance(exc, BaseException):
            self.errors.append(exc)
        logger.debug("workflow loop: %s", message, exc_info=exc)
