"""Where a workflow task's code runs, bounded by its timeout and watched for blocking.

Workflow code is synchronous once its history is in hand (its deterministic loop is driven to
idle), so it can run on the worker's event loop or on another thread:

- ``Isolation.LOOP``: on the event loop, as a plain call (no thread hop). A step that blocks
  blocks the worker (every topic it consumes) while it runs; the watchdog still warns and
  stops it at its timeout (CPU-bound code stops at once, a blocking call when it returns).
- ``Isolation.THREAD``: on a thread of the executor (one per workflow task running at once;
  threads are kept and reused). The event loop goes on serving other messages while the code
  runs (with CPython's GIL, CPU-bound code still shares the interpreter with the loop, which
  gets its turn every few milliseconds; ``time.sleep`` and blocking I/O release it). A task
  past its timeout is answered at once and its thread left to finish.
- ``Isolation.AUTO`` (the default): on the loop, until one of the workflow's steps runs past
  the blocking threshold; from then on, the workflow's tasks run on threads. A well-behaved
  workflow pays nothing; a blocking one blocks the worker once.

Each instance's deterministic loop becomes the running loop of whichever thread drives it
(``asyncio`` keeps the running loop per thread), and one instance runs one task at a time, so
the code sees the same thing wherever it runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from infinitic.workflow_engine._watchdog import GuardedRun, StepInterrupted, watchdog

logger = logging.getLogger("infinitic.workflow_engine")

T = TypeVar("T")

#: A workflow task's timeout (seconds) when none is configured, as in Infinitic.
DEFAULT_WORKFLOW_TASK_TIMEOUT = 60.0
#: Code that runs this long without yielding is reported as blocking (seconds).
DEFAULT_BLOCKING_THRESHOLD = 0.2


class Isolation(enum.Enum):
    """Where workflow code runs: see the module documentation."""

    LOOP = "loop"
    THREAD = "thread"
    AUTO = "auto"


class _Outcome(Generic[T]):
    __slots__ = ("error", "value")

    def __init__(self, value: T | None, error: BaseException | None) -> None:
        self.value = value
        self.error = error


class _StepThread:
    """A thread running workflow code for the loop, one call at a time."""

    def __init__(self, pool: StepThreads) -> None:
        self._pool = pool
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._work, name="infinitic-workflow-task", daemon=True
        )
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()


class StepThreads:
    """The threads of one executor (created when needed, kept idle for the next task)."""

    def __init__(self) -> None:
        self._idle: list[_StepThread] = []
        self._closed = False

    async def call(self, fn: Callable[[], T], guarded: GuardedRun) -> T:
        """Run ``fn`` on a thread, watched as ``guarded``; return or raise what it did.

        Raises:
            StepInterrupted: its timeout passed (raised here at once, even when the thread
                is still blocked in a call).
        """
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # e.g. the log context of the message handled
        waiter: asyncio.Future[_Outcome[T]] = loop.create_future()
        worker = self._idle.pop() if self._idle else _StepThread(self)

        def settle(outcome: _Outcome[T]) -> None:
            if not waiter.done():
                waiter.set_result(outcome)

        def finished(outcome: _Outcome[T]) -> None:  # on the loop
            settle(outcome)
            if self._closed:
                worker.stop()
            else:
                self._idle.append(worker)

        def job() -> None:  # on the thread
            try:
                outcome: _Outcome[T] = _Outcome(context.run(watchdog().run, guarded, fn), None)
            except BaseException as e:  # handed to the loop, which raises it
                outcome = _Outcome(None, e)
            try:
                loop.call_soon_threadsafe(finished, outcome)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        def timed_out(_: GuardedRun) -> None:  # on the watchdog's thread
            try:
                loop.call_soon_threadsafe(settle, _Outcome(None, StepInterrupted()))
            except RuntimeError:
                pass

        guarded.on_timeout = timed_out
        worker.submit(job)
        outcome = await waiter
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the idle threads (busy ones stop once their call returns); idempotent."""
        self._closed = True
        idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()


class WorkflowTaskRunner:
    """Runs the code of one workflow's tasks: where (:class:`Isolation`), for how long at most,
    and watched for blocking.

    Args:
        workflow_name: the workflow (for the logs).
        isolation: where the code runs.
        blocking_threshold: seconds of code without yielding reported as blocking (None: no
            report; in AUTO, no move to threads either).
    """

    def __init__(
        self,
        workflow_name: str,
        isolation: Isolation = Isolation.AUTO,
        blocking_threshold: float | None = DEFAULT_BLOCKING_THRESHOLD,
    ) -> None:
        self.workflow_name = workflow_name
        self.isolation = isolation
        self.blocking_threshold = blocking_threshold
        self.threaded = isolation is Isolation.THREAD
        self._threads = StepThreads()
        weakref.finalize(self, self._threads.close)  # idle threads end with their runner

    async def run(self, fn: Callable[[], T], guarded: GuardedRun) -> T:
        """Run ``fn`` (the code of a workflow task) watched as ``guarded``.

        Raises:
            StepInterrupted: it ran past ``guarded.timeout``.
        """
        guarded.blocking_threshold = self.blocking_threshold
        if self.threaded:
            return await self._threads.call(fn, guarded)
        try:
            return watchdog().run(guarded, fn)
        finally:
            if guarded.blocked_for and self.isolation is Isolation.AUTO:
                self.threaded = True
                logger.warning(
                    "workflow %s: its code blocked the worker's event loop for %.2f s (method "
                    "%s, at %s); its workflow tasks run on threads from now on",
                    self.workflow_name,
                    guarded.blocked_for,
                    guarded.method,
                    guarded.where,
                )

    def close(self) -> None:
        self._threads.close()
