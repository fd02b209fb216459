"""Transport-internal message properties, and the received-message envelope.

The transport keeps its own bookkeeping in message properties whose names start with
``x-infinitic-t-``; handlers never see them. They survive republishing, so a retried or parked
message keeps its original id, topic, publish time and due time.
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

    @classmethod
    def wrap(cls, raw: Any, source: Any, *, topic: str, from_retry_topic: bool) -> Envelope:
        """Build the envelope of a ``pulsar.Message`` received for logical ``topic``."""
        properties: dict[str, str] = dict(raw.properties())
        due = properties.get(DELIVER_AT)
        key = raw.partition_key() or None
        return cls(
            raw=raw,
            source=source,
            from_retry_topic=from_retry_topic,
            topic=properties.get(ORIGIN_TOPIC, topic),
            properties=properties,
            attempts=_int(properties.get(ATTEMPTS)),
            broker_redeliveries=int(raw.redelivery_count()),
            due_ms=_int(due) if due is not None else None,
            key=key,
        )

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
        return _int(origin) if origin is not None else int(self.raw.publish_timestamp())

    def user_properties(self) -> dict[str, str]:
        """The properties without the transport's bookkeeping."""
        return {k: v for k, v in self.properties.items() if not k.startswith(_PREFIX)}

    def to_transport_message(self) -> TransportMessage:
        """The message as a handler sees it."""
        return TransportMessage(
            topic=self.topic,
            data=bytes(self.raw.data()),
            key=self.key,
            message_id=self.origin_id,
            redelivery_count=self.redelivery_count,
            publish_time=self.origin_time_ms / 1000,
            properties=self.user_properties(),
        )

    def republish_properties(self, **changes: str) -> dict[str, str]:
        """Properties for a republished copy: origin kept, ``changes`` applied."""
        properties = dict(self.properties)
        properties.setdefault(ORIGIN_ID, self.origin_id)
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
