"""A manual clock for tests: time moves only when told to."""

from __future__ import annotations

import time
from collections.abc import Callable


class ManualClock:
    """A clock whose time only changes with :meth:`set` or :meth:`advance`.

    Give it to ``InMemoryTransport(clock=...)``: delayed messages (timers, retries) are then held
    until the clock reaches their due time, however far away it is, so a test can jump over an
    hour-long timer at once.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._listeners: list[Callable[[], None]] = []

    def __call__(self) -> float:
        return self._now

    def now(self) -> float:
        return self._now

    def set(self, instant: float) -> None:
        """Move to ``instant`` (never backwards)."""
        if instant < self._now:
            raise ValueError(f"ManualClock cannot go back from {self._now} to {instant}")
        self._now = instant
        for listener in list(self._listeners):
            listener()

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds``."""
        self.set(self._now + seconds)

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after each change of time."""
        self._listeners.append(listener)
