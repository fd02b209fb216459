"""Transport-internal message properties, and the received-message envelope.

The transport keeps its own bookkeeping in message properties whose names start with
``x-infinitic-t-``; handlers never see them. They survive republishing, so a retried or parked
message keeps its original id, publish time and due time.

Anyone allowed to publish on a topic can set them, so they are checked, never trusted: a
number that is not a non-negative integer in range makes the message impossible to handle
(:attr:`Envelope.problem`), and it is dead-lettered with that reason. The topic a message is
handled and dead-lettered as is always the subscription's own, whatever a property says.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infinitic.transport import TransportMessage

_PREFIX = "x-infinitic-t-"
#: Epoch milliseconds before which the message must not reach a handler.
DELIVER_AT = _PREFIX + "deliver-at"
#: Failed attempts so far (republish retry mode).
ATTEMPTS = _PREFIX + "attempts"
#: Id, logical topic and publish time (ms) of the first publication.
ORIGIN_ID = _PREFIX + "origin-id"
ORIGIN_TOPIC = _PREFIX + "origin-topic"
ORIGIN_TIME = _PREFIX + "origin-time"
#: Epoch milliseconds when the message was last parked (retry topic or park topic).
PARKED_AT = _PREFIX + "parked-at"
#: Epoch milliseconds when a message parked on a park topic is to be looked at again.
LOOK_AT = _PREFIX + "look-at"


#: Epoch milliseconds of 3000-01-01: a later due time is a forged or corrupted property.
LATEST_MS = 32_503_680_000_000
#: More failed attempts than any retry policy allows: a forged or corrupted property.
MOST_ATTEMPTS = 1_000_000
_BOUNDS = {
    DELIVER_AT: LATEST_MS,
    ATTEMPTS: MOST_ATTEMPTS,
    PARKED_AT: LATEST_MS,
    LOOK_AT: LATEST_MS,
    ORIGIN_TIME: LATEST_MS,
}


def to_millis(epoch_seconds: float) -> int:
    """Epoch seconds to epoch milliseconds, rounded up (never deliver early)."""
    return math.ceil(epoch_seconds * 1000)


def _int(value: str | None, default: int = 0) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return default


def property_problem(properties: Mapping[str, str]) -> str | None:
    """Why the transport properties of a received message are impossible, or None."""
    for name, highest in _BOUNDS.items():
        value = properties.get(name)
        if value is None:
            continue
        # int() would accept "+5", " 5", "5_000" and digits of other scripts: be strict.
        if not (value.isascii() and value.isdigit() and len(value) <= 20):
            return f"impossible transport property {name}={value[:40]!r}: not an integer >= 0"
        if int(value) > highest:
            return f"impossible transport property {name}={value}: above {highest}"
    return None


@dataclass(slots=True, eq=False)
class Envelope:
    """A received message, what the transport knows about it, and where to acknowledge it.

    Attributes:
        raw: the ``pulsar.Message``.
        source: the ``pulsar.asyncio.Consumer`` it came from (acknowledge there).
        from_retry_topic: it came from the subscription's retry topic.
        topic: the logical topic handlers see (the original one for retried messages).
        properties: every property, internal ones included.
        attempts: failed attempts recorded in the properties.
        broker_redeliveries: the broker's redelivery count (crashes, closes, nacks).
        due_ms: epoch milliseconds before which it must not be handled, or None.
        holds_slot: it still holds a receive slot of its consumer.
        problem: why its transport properties are impossible (it is then dead-lettered),
            or None.
    """

    raw: Any
    source: Any
    from_retry_topic: bool
    topic: str
    properties: dict[str, str]
    attempts: int
    broker_redeliveries: int
    due_ms: int | None
    holds_slot: bool = True
    key: str | None = field(default=None)
    problem: str | None = None
    payload: bytes | None = None

    def data(self) -> bytes:
        """The payload, copied out of the client once for the handler and every republish."""
        if self.payload is None:
            self.payload = bytes(self.raw.data())
        return self.payload

    @classmethod
    def wrap(cls, raw: Any, source: Any, *, topic: str, from_retry_topic: bool) -> Envelope:
        """Build the envelope of a ``pulsar.Message`` received for logical ``topic``."""
        properties: dict[str, str] = dict(raw.properties())
        problem = property_problem(properties)
        due = properties.get(DELIVER_AT)
        key = raw.partition_key() or None
        return cls(
            raw=raw,
            source=source,
            from_retry_topic=from_retry_topic,
            topic=topic,
            properties=properties,
            attempts=0 if problem else _int(properties.get(ATTEMPTS)),
            broker_redeliveries=int(raw.redelivery_count()),
            due_ms=_int(due) if due is not None and not problem else None,
            key=key,
            problem=problem,
        )

    @property
    def size(self) -> int:
        """The payload's size in bytes (without copying it, where the client allows)."""
        length = getattr(self.raw, "length", None)
        return int(length()) if length is not None else len(self.raw.data())

    @property
    def redelivery_count(self) -> int:
        """Deliveries before this one: recorded failures plus broker redeliveries."""
        return self.attempts + self.broker_redeliveries

    @property
    def parked_at_ms(self) -> int:
        """When it was last parked on the retry topic (epoch ms), 0 if never."""
        return _int(self.properties.get(PARKED_AT))

    @property
    def look_at_ms(self) -> int:
        """When a message parked on a park topic is to be looked at again (epoch ms), 0 if
        not recorded."""
        return _int(self.properties.get(LOOK_AT))

    @property
    def origin_id(self) -> str:
        """The id of the first publication (stable across retries)."""
        return self.properties.get(ORIGIN_ID) or str(self.raw.message_id())

    @property
    def origin_time_ms(self) -> int:
        """Publish time of the first publication, epoch milliseconds."""
        origin = self.properties.get(ORIGIN_TIME)
        if origin is not None and not self.problem:
            return _int(origin)
        return int(self.raw.publish_timestamp())

    def user_properties(self) -> dict[str, str]:
        """The properties without the transport's bookkeeping."""
        return {k: v for k, v in self.properties.items() if not k.startswith(_PREFIX)}

    def to_transport_message(self) -> TransportMessage:
        """The message as a handler sees it."""
        return TransportMessage(
            topic=self.topic,
            data=self.data(),
            key=self.key,
            message_id=self.origin_id,
            redelivery_count=self.redelivery_count,
            publish_time=self.origin_time_ms / 1000,
            properties=self.user_properties(),
        )

    def republish_properties(self, **changes: str) -> dict[str, str]:
        """Properties for a republished copy: origin kept, ``changes`` applied."""
        properties = dict(self.properties)
        # The id handlers saw (an empty origin id was replaced by the message id), so every
        # copy keeps it.
        properties[ORIGIN_ID] = self.origin_id
        properties.setdefault(ORIGIN_TOPIC, self.topic)
        properties.setdefault(ORIGIN_TIME, str(self.origin_time_ms))
        properties.update(changes)
        return properties


def check_properties(properties: Mapping[str, str] | None) -> dict[str, str]:
    """Copy user properties, checking they are strings.

    Raises:
        TypeError: a name or a value is not a string.
    """
    out: dict[str, str] = {}
    for name, value in (properties or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"message properties must be str to str, got {name!r}: {value!r}")
        out[name] = value
    return out
