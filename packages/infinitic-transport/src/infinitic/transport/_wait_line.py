"""Idle handlers waiting in line for messages."""

from __future__ import annotations

import asyncio
from collections import deque


class WaitLine:
    """Idle handlers of a consumer, woken one per runnable message, in arrival order.

    Waking every idle handler at every message (a condition's ``notify_all``) cost more CPU than
    handling the messages; a woken handler that finds nothing waits again.
    """

    def __init__(self) -> None:
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._waiters)

    async def wait(self) -> None:
        """Wait until :meth:`wake` picks this handler."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.wake(1)  # it was woken for a message: pass the turn on
            raise

    def wake(self, count: int) -> None:
        """Wake up to ``count`` waiting handlers, longest waiting first."""
        while count > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1
