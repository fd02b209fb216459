"""The watchdog of workflow tasks: one thread per process that looks at the running ones.

A workflow task's code runs synchronously (the deterministic loop of its instance is driven to
idle), on the worker's event loop or on a thread of its executor. Each run registers a
:class:`GuardedRun`; the watchdog wakes every few milliseconds while runs are registered and

- logs a warning, once per run, when a run's code has been running for longer than its
  blocking threshold, naming the workflow, the method and the line it is at (read from the
  running thread's frame, ``sys._current_frames()``);
- stops a run that passed its timeout: it raises :class:`StepInterrupted` in the running thread
  (``PyThreadState_SetAsyncExc``), which unwinds the workflow code at its next bytecode, and
  tells the waiting side at once (a thread blocked in a C call, ``time.sleep`` or a socket read,
  only stops when the call returns; the executor does not wait for it).

The interruption is raced safely with the run's end: the watchdog raises only while the run is
registered, under the registry's lock, at most once per run; a run leaving the registry (under
the same lock) while an exception is raised but not delivered yet makes it be delivered there,
inside the guarded call (a Python call checks for it), so nothing escapes the guarded code. It is
never cleared instead: CPython 3.11 would then keep its "pending" signal set, and a thread being
profiled (the strict check) would loop forever at its next function entry.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

from infinitic.workflow_engine._code_places import describe_place

logger = logging.getLogger("infinitic.workflow_engine")

T = TypeVar("T")

#: How often the watchdog looks at the running workflow tasks (seconds).
WATCHDOG_TICK = 0.02
#: How often it looks when none was running at its last look.
WATCHDOG_IDLE_TICK = 0.1


class StepInterrupted(KeyboardInterrupt):
    """Raised in workflow code stopped by the watchdog. A KeyboardInterrupt, so that asyncio
    (its tasks and handles) lets it through and ``except Exception`` in workflow code does not
    catch it."""


_set_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
)


def _take_pending() -> None:
    """A Python call: an exception raised in this thread and not delivered yet is raised here
    (function entries check for it)."""


class _CollectorClock:
    """Seconds the garbage collector has run in this process (every thread), counted from the
    first run watched: a collection of the oldest generation can take a few hundred
    milliseconds inside any step, and is not the workflow code blocking its thread."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._since: float | None = None
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            self._installed = True
            gc.callbacks.append(self._callback)

    def _callback(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._since = time.monotonic()
        elif self._since is not None:
            self.seconds += time.monotonic() - self._since
            self._since = None

    def now(self) -> float:
        """The seconds counted so far, the collection under way included."""
        since = self._since
        return self.seconds + (time.monotonic() - since if since is not None else 0.0)


_collector = _CollectorClock()


class GuardedRun:
    """One workflow task's code, watched while it runs.

    Attributes:
        where: the place the code was at when the watchdog stopped it or warned about it.
        blocked_for: seconds it had run when the watchdog warned (0: no warning).
        timed_out: the watchdog stopped it (its timeout passed).
    """

    __slots__ = (
        "_warned",
        "blocked_for",
        "blocking_threshold",
        "cpu_started",
        "fallback_method",
        "gc_started",
        "method",
        "native_id",
        "on_timeout",
        "started",
        "thread_id",
        "timed_out",
        "timeout",
        "where",
        "workflow_id",
        "workflow_name",
    )

    def __init__(
        self,
        workflow_name: str,
        workflow_id: str,
        fallback_method: str,
        timeout: float | None,
        blocking_threshold: float | None,
        on_timeout: Callable[[GuardedRun], None] | None = None,
    ) -> None:
        self.workflow_name = workflow_name
        self.workflow_id = workflow_id
        self.fallback_method = fallback_method
        self.timeout = timeout
        self.blocking_threshold = blocking_threshold
        self.on_timeout = on_timeout
        self.thread_id = 0
        self.started = 0.0
        self.cpu_started = 0.0
        self.gc_started = 0.0
        self.native_id = 0
        self.where = "?"
        self.method = fallback_method
        self.blocked_for = 0.0
        self.timed_out = False
        self._warned = False

    def _look(self, frame: FrameType | None) -> None:
        if frame is not None:
            method, where = describe_place(frame)
            self.method = method or self.fallback_method
            self.where = where


class Watchdog:
    """The process's watchdog thread (started at the first run, a daemon)."""

    def __init__(self, tick: float = WATCHDOG_TICK, idle_tick: float = WATCHDOG_IDLE_TICK) -> None:
        self._tick = tick
        self._idle_tick = idle_tick
        self._lock = threading.Lock()  # an interruption and a run's end exclude each other
        self._runs: set[GuardedRun] = set()
        self._thread: threading.Thread | None = None

    def run(self, guarded: GuardedRun, fn: Callable[[], T]) -> T:
        """Call ``fn`` in this thread, watched as ``guarded``.

        Raises:
            StepInterrupted: the watchdog stopped it (``guarded.timed_out`` is set).
        """
        registered = False
        try:
            try:
                guarded.thread_id = threading.get_ident()
                guarded.started = time.monotonic()
                guarded.cpu_started = time.thread_time()
                guarded.gc_started = _collector.now()
                guarded.native_id = threading.get_native_id()
                self._register(guarded)
                registered = True
                return fn()
            finally:
                if registered:
                    self._unregister(guarded)  # no interruption is raised after this
                    if guarded.timed_out:
                        _take_pending()  # the one raised, if not delivered yet
        except StepInterrupted:
            self._unregister(guarded)  # it was raised once, and delivered: nothing pending
            raise

    def _register(self, guarded: GuardedRun) -> None:
        self._runs.add(guarded)  # atomic; the watchdog copies the set before looking
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    _collector.install()
                    self._thread = threading.Thread(
                        target=self._watch, name="infinitic-workflow-watchdog", daemon=True
                    )
                    self._thread.start()

    def _unregister(self, guarded: GuardedRun) -> None:
        with self._lock:
            self._runs.discard(guarded)

    def _watch(self) -> None:
        # It polls rather than being woken at each run: a run costs no thread switch, and
        # nothing needs a look before its blocking threshold anyway. Idle, it looks less often.
        while True:
            time.sleep(self._tick if self._runs else self._idle_tick)
            if self._runs:
                with self._lock:
                    try:
                        self._check(time.monotonic())
                    except Exception:  # the watchdog never dies
                        logger.exception("the workflow task watchdog failed a check")

    def _check(self, now: float) -> None:
        frames: dict[int, FrameType] | None = None
        for run in list(self._runs):
            elapsed = now - run.started
            late = run.timeout is not None and elapsed >= run.timeout and not run.timed_out
            collected = _collector.now() - run.gc_started  # not the code's doing
            slow = (
                run.blocking_threshold is not None
                and elapsed - collected >= run.blocking_threshold
                and not run._warned
                and _blocking(run, run.blocking_threshold, collected)
            )
            if not (late or slow):
                continue
            if frames is None:
                frames = sys._current_frames()
            run._look(frames.get(run.thread_id))
            if slow:
                run._warned = True
                run.blocked_for = elapsed
                logger.warning(
                    "workflow %s (id %s), method %s: its code has run for %.2f s without "
                    "yielding (%.2f s of CPU), at %s; workflow code must not block "
                    "(CPU-heavy work, time.sleep, blocking I/O): move it to a service task",
                    run.workflow_name,
                    run.workflow_id,
                    run.method,
                    elapsed,
                    _cpu(run),
                    run.where,
                )
            if late:
                run.timed_out = True
                _set_async_exc(run.thread_id, StepInterrupted)
                if run.on_timeout is not None:
                    run.on_timeout(run)


def _cpu(run: GuardedRun) -> float:
    """CPU seconds the run's thread has used since the run started (NaN if unknown)."""
    try:
        clock = time.pthread_getcpuclockid(run.thread_id)
        return time.clock_gettime(clock) - run.cpu_started
    except (AttributeError, OSError):  # not on this platform, or the thread is gone
        return float("nan")


def _blocking(run: GuardedRun, threshold: float, collected: float = 0.0) -> bool:
    """Is a run past ``threshold`` of wall time blocking its thread, rather than waiting for a
    processor or for the interpreter lock on a loaded machine? It is when it used that much
    CPU, or when its thread sleeps in a system call other than a lock's wait (``time.sleep``,
    blocking I/O; the kernel's wait channel tells). Where neither can be read, it is.
    ``collected``: seconds of garbage collection during the run, not counted as its CPU."""
    cpu = _cpu(run)
    if cpu != cpu:
        return True
    if cpu - collected >= threshold:  # the collector's time is not the code's
        return True
    task = f"/proc/self/task/{run.native_id}"
    try:
        with open(f"{task}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    if state not in (b"S", b"D"):
        return False  # running, or waiting for a processor
    try:
        with open(f"{task}/wchan", "rb") as f:
            channel = f.read()
    except OSError:
        return True
    return b"futex" not in channel  # the interpreter lock (or another lock) is not I/O


_watchdog = Watchdog()


def watchdog() -> Watchdog:
    """The process's watchdog."""
    return _watchdog
