"""Room for the delayed messages a consumer holds in memory, in messages and in bytes.

A message due soon is held unacknowledged until due (see :mod:`._consumer`). A bound in
messages alone (``max_held_messages``) is no bound on memory: 100 messages of the 5 MB a message
may weigh are 500 MB per subscription. So a consumer holds messages within both bounds
(``max_held_bytes`` too); a message that does not fit waits in the broker (its receive loop waits
for room) or is parked, as when the count is reached. A message larger than the byte budget is
held alone, so that it is never stuck.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger("infinitic.transport_pulsar")


class HeldBudget:
    """The count and bytes of the messages held by one consumer.

    Args:
        topic: the consumer's topic, for the warning.
        max_messages: the most messages held at once.
        max_bytes: the most payload bytes held at once.
    """

    def __init__(self, topic: str, max_messages: int, max_bytes: int) -> None:
        self.topic = topic
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.count = 0
        self.bytes = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._warned = False

    def fits(self, size: int) -> bool:
        """Whether a message of ``size`` bytes can be held now (always when none is)."""
        if self.count == 0:
            return True
        return self.count < self.max_messages and self.bytes + size <= self.max_bytes

    async def acquire(self, size: int) -> None:
        """Wait until a message of ``size`` bytes fits, then count it as held."""
        while not self.fits(size):
            self._warn_bytes(size)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.count += 1
        self.bytes += size

    def release(self, size: int) -> None:
        """A held message of ``size`` bytes is no longer held: wake whoever waits for room."""
        self.count -= 1
        self.bytes -= size
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def has_room(self, size: int) -> bool:
        """Whether a message of ``size`` bytes fits now; warns (once) when its bytes are why
        it does not."""
        if self.fits(size):
            return True
        self._warn_bytes(size)
        return False

    def _warn_bytes(self, size: int) -> None:
        if self._warned or self.count >= self.max_messages:
            return
        self._warned = True
        logger.warning(
            "%s: the delayed messages held in memory reach %s bytes (%d messages; a message "
            "of %s bytes does not fit in maxHeldBytes %s): the next ones wait in the broker "
            "or are parked until held ones are due",
            self.topic,
            f"{self.bytes:,}",
            self.count,
            f"{size:,}",
            f"{self.max_bytes:,}",
        )
