"""Where far-future messages wait on a broker without delayed delivery (pulsar-lite).

A message due later than it can be held in memory is parked on one of the subscription's
**park topics** ``<topic>-<subscription>-park-<k>``, for k in ``0 .. PARK_LEVELS - 1``. Every
message on park topic k waits the same time, ``park_recheck_seconds * 2**k``, before it is
looked at again. A topic whose messages all wait the same time is ordered by look time, since
it is ordered by publication: its consumer only ever waits for the message at its head, the
others stay in the broker (and the client's prefetch queue), costing nothing until then.

At each look the message is parked again on the longest level whose wait is at most half of
what is left before it must be held (``due - delay_hold_seconds``), so a message due in
``r`` seconds is republished about ``log2(r / park_recheck_seconds)`` times (13 times for an
hour with the defaults) instead of ``r / park_recheck_seconds`` times. The factor two is the
margin for a handover: when a consumer closes or dies, the broker gives its unacknowledged
park messages to another consumer, behind the ones that consumer already prefetched. Those were
all parked before the handover, so they are looked at within one wait of it, and the
handed-over message, parked at most one wait before the handover, still has one wait to spare.
A message due beyond twice the longest wait is parked again on the top level until it is not.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Park topics per subscription; level k waits ``park_recheck_seconds * 2**k``. Each is one
#: more idle consumer per subscription (a few dozen microseconds of CPU per second for the
#: client's timers), and each level halves the republishing rate of messages due beyond the
#: longest wait. Lowering it would strand the messages parked on the dropped levels.
PARK_LEVELS = 8


def park_topic(topic: str, subscription: str, level: int) -> str:
    """Return the logical name of park topic ``level`` of a subscription."""
    return f"{topic}-{subscription}-park-{level}"


@dataclass(frozen=True, slots=True)
class ParkingLadder:
    """The park levels of a subscription and the choice among them.

    Attributes:
        shortest_ms: the wait of level 0 (``park_recheck_seconds``), in milliseconds.
        hold_ms: how long before it is due a message is held in memory
            (``delay_hold_seconds``), in milliseconds.
        levels: the number of levels.
    """

    shortest_ms: int
    hold_ms: int
    levels: int = PARK_LEVELS

    @classmethod
    def of(cls, park_recheck_seconds: float, delay_hold_seconds: float) -> ParkingLadder:
        """The ladder of a consumer's settings."""
        return cls(
            shortest_ms=max(1, int(park_recheck_seconds * 1000)),
            hold_ms=int(delay_hold_seconds * 1000),
        )

    def wait_ms(self, level: int) -> int:
        """How long a message waits on ``level`` before it is looked at again."""
        return self.shortest_ms << level

    @property
    def near_ms(self) -> int:
        """Messages due within this many milliseconds are held in memory, never parked."""
        return self.hold_ms + 2 * self.shortest_ms

    def level_for(self, remaining_ms: int) -> int | None:
        """The level to park a message due in ``remaining_ms``, or None when it is near
        enough to be held in memory (see :attr:`near_ms`)."""
        spare = remaining_ms - self.hold_ms
        halves = spare // (2 * self.shortest_ms)  # how many shortest double-waits fit
        if halves < 1:
            return None
        return min(self.levels - 1, halves.bit_length() - 1)

    def looks(self, remaining_ms: int) -> list[int]:
        """The levels a message due in ``remaining_ms`` goes through, if every look is on
        time (its number of republishes is the length)."""
        levels: list[int] = []
        level = self.level_for(remaining_ms)
        while level is not None:
            levels.append(level)
            remaining_ms -= self.wait_ms(level)
            level = self.level_for(remaining_ms)
        return levels
