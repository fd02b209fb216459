"""Messages of one consumer that are ready to be handled, with per-key serialization.

For KEY_SHARED subscriptions, a key is handed to one worker at a time: its other messages wait
in the key's queue, in arrival order, until the worker is done. Keys run in parallel up to the
number of workers. This holds on any broker: pulsar-lite has no usable Key_Shared, and real
Pulsar's Key_Shared routes a key to one consumer but that consumer still runs its messages
concurrently unless they are serialized here.

Idle workers wait in line (:class:`~infinitic.transport.WaitLine`): a runnable message wakes one
of them, not all.
"""

from __future__ import annotations

from collections import deque

from infinitic.transport import WaitLine
from infinitic.transport_pulsar._envelope import Envelope


class ReadyQueue:
    """FIFO of ready messages; per-key FIFOs with at most one message of a key in flight.

    Args:
        keyed: serialize messages by key (KEY_SHARED); messages without a key are never
            serialized.
    """

    def __init__(self, *, keyed: bool) -> None:
        self._keyed = keyed
        self._unkeyed: deque[Envelope] = deque()
        self._by_key: dict[str, deque[Envelope]] = {}
        self._ready_keys: deque[str] = deque()
        self._busy_keys: set[str] = set()
        self._idle = WaitLine()
        self._closed = False
        self.in_flight = 0

    def _key_of(self, envelope: Envelope) -> str | None:
        return envelope.key if self._keyed else None

    def __len__(self) -> int:
        return len(self._unkeyed) + sum(len(q) for q in self._by_key.values())

    def busy_keys(self) -> frozenset[str]:
        """Keys being handled right now."""
        return frozenset(self._busy_keys)

    def put_nowait(self, envelope: Envelope) -> None:
        """Add a ready message (the caller notifies with :meth:`notify`)."""
        key = self._key_of(envelope)
        if key is None:
            self._unkeyed.append(envelope)
            return
        queue = self._by_key.get(key)
        if queue is None:
            queue = self._by_key[key] = deque()
        if not queue and key not in self._busy_keys:
            self._ready_keys.append(key)
        queue.append(envelope)

    async def put(self, envelope: Envelope) -> None:
        """Add a ready message and wake a worker."""
        self.put_nowait(envelope)
        await self.notify()

    def _take(self) -> Envelope | None:
        # Alternate fairly: keyed work first when a key is ready, else unkeyed.
        if self._ready_keys:
            key = self._ready_keys.popleft()
            queue = self._by_key[key]
            envelope = queue.popleft()
            if not queue:
                del self._by_key[key]
            self._busy_keys.add(key)
            return envelope
        if self._unkeyed:
            return self._unkeyed.popleft()
        return None

    async def get(self) -> Envelope | None:
        """Wait for the next runnable message; None once closed."""
        while True:
            if self._closed:
                return None
            envelope = self._take()
            if envelope is not None:
                self.in_flight += 1
                return envelope
            await self._idle.wait()

    async def done(self, envelope: Envelope) -> None:
        """Mark a message taken by :meth:`get` as finished, releasing its key."""
        self.in_flight -= 1
        key = self._key_of(envelope)
        if key is not None and key in self._busy_keys:
            self._busy_keys.discard(key)
            if key in self._by_key:
                self._ready_keys.append(key)
                await self.notify()

    def _runnable(self) -> int:
        return len(self._ready_keys) + len(self._unkeyed)

    async def notify(self) -> None:
        """Wake as many waiting workers as there are runnable messages (all once closed)."""
        self.wake()

    def wake(self) -> None:
        """:meth:`notify`, from a callback."""
        self._idle.wake(len(self._idle) if self._closed else self._runnable())

    async def close(self) -> list[Envelope]:
        """Stop handing out messages; return those never taken (left unacknowledged)."""
        self._closed = True
        await self.notify()
        left = list(self._unkeyed)
        for queue in self._by_key.values():
            left.extend(queue)
        self._unkeyed.clear()
        self._by_key.clear()
        self._ready_keys.clear()
        return left
