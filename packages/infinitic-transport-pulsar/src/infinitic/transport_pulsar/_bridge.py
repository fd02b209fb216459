"""Hand results from the Pulsar client's C++ threads to the event loop, a batch at a time.

The C++ client completes sends (and receives that had to wait) on its I/O thread. Waking the
event loop once per completion (``loop.call_soon_threadsafe``, a write to the loop's self-pipe
and a wake-up each) cost about a tenth of a busy worker's time. Here a completion is appended to
a queue and the loop is woken only when no drain is already pending: under load, one wake-up
settles every completion that arrived since the last one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("infinitic.transport_pulsar")


class LoopBridge:
    """Runs callables posted from any thread on one event loop, in posting order (those posted
    from the loop's own thread run at once).

    Args:
        loop: the loop to run them on (the running loop when built in a coroutine).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        # The loop's thread, when built on it (in a coroutine): see post.
        self._thread = threading.get_ident() if loop is None else None
        self._loop = loop or asyncio.get_running_loop()
        self._items: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._scheduled = False
        #: How many times the loop was woken (for tests and benchmarks).
        self.wakeups = 0

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon; safe from any thread, never raises.

        C++ callbacks call this: an exception there would abort the process. A callback the
        C++ client makes at once, inside a call of the loop's own thread (a receive that finds
        a message prefetched), runs at once: it settles a future, which only schedules its
        waiters, and a wake-up of the loop by itself would cost a turn and two system calls.
        """
        if self._thread is not None and threading.get_ident() == self._thread:
            _run(fn, args)
            return
        self._items.append((fn, args))
        # The append comes before the check, and the drain clears the flag before it pops:
        # whatever the interleaving, an item is never left behind without a drain to come.
        if self._scheduled:
            return
        self._scheduled = True
        self.wakeups += 1
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            self._scheduled = False

    def _drain(self) -> None:
        self._scheduled = False
        items = self._items
        while items:
            _run(*items.popleft())


def _run(fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    try:
        fn(*args)
    except Exception:
        logger.exception("a Pulsar completion callback failed")


def settle(future: asyncio.Future[Any], error: BaseException | None, value: Any = None) -> None:
    """Complete ``future`` with ``value`` or ``error``, unless it is done (cancelled)."""
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
