"""The broker-agnostic transport interface.

Engines publish bytes to named topics and register handlers on subscriptions. A handler that
returns acknowledges its message; a handler that raises negatively acknowledges it: the message
is delivered again after ``redelivery_delay`` seconds, and after ``max_redeliveries`` failed
redeliveries it goes to the topic's dead-letter twin (``<topic>-dlq``) with the error recorded, so
a poison message never blocks its topic. A handler that raises :class:`RetryLater` has its message
delivered again after the given delay, without using that budget. Delivery is at least once.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

DEAD_LETTER_SUFFIX = "-dlq"

#: Property names set on dead-lettered messages.
DLQ_ERROR_PROPERTY = "x-infinitic-error"
DLQ_ORIGINAL_TOPIC_PROPERTY = "x-infinitic-original-topic"
DLQ_DELIVERIES_PROPERTY = "x-infinitic-deliveries"

#: The largest encoded message a transport accepts by default: Apache Pulsar's default
#: ``maxMessageSize`` (5 MiB) less room for the properties a retried or dead-lettered copy gains.
DEFAULT_MAX_MESSAGE_BYTES = 5 * 1024 * 1024 - 64 * 1024


def dead_letter_topic(topic: str) -> str:
    """Return the name of the dead-letter twin of ``topic``."""
    return topic + DEAD_LETTER_SUFFIX


class SubscriptionType(enum.Enum):
    """How the messages of a subscription are spread over its consumers.

    SHARED: any consumer takes any message, in parallel.
    KEY_SHARED: messages with the same key are processed one at a time, in publish order.
    EXCLUSIVE: a single consumer (a second one is refused).
    """

    SHARED = "shared"
    KEY_SHARED = "key_shared"
    EXCLUSIVE = "exclusive"


@dataclass(frozen=True, slots=True)
class TransportMessage:
    """A message as handed to a handler."""

    topic: str
    data: bytes
    key: str | None
    message_id: str
    redelivery_count: int = 0
    publish_time: float = 0.0
    properties: Mapping[str, str] = field(default_factory=dict)


MessageHandler = Callable[[TransportMessage], Awaitable[None]]

#: Called once a message has been dead-lettered, with the message and the reason; lets the
#: subscriber tell whoever waits for the message's effect (it must not raise).
DeadLetterHook = Callable[[TransportMessage, str], Awaitable[None]]


class RetryLater(Exception):  # a signal to the consumer, not an error
    """Raised by a handler for a message that came too early: deliver it again later.

    Unlike a failure, it does not count towards the dead-letter budget: the handler raises it
    only while it knows the message will become processable (e.g. it waits for a state that
    another process has sent its messages for and is storing now).

    Args:
        delay: seconds before the message is delivered again.
        reason: why (logged at debug level).
    """

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay = max(0.0, delay)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How a subscription is consumed.

    Attributes:
        type: the subscription type.
        concurrency: how many messages this consumer processes at once (for KEY_SHARED: at
            most one per key).
        max_redeliveries: failed redeliveries after which a message is dead-lettered.
        redelivery_delay: seconds before a negatively acknowledged message comes back.
        on_dead_letter: awaited after a message was dead-lettered (see DeadLetterHook).
    """

    type: SubscriptionType = SubscriptionType.SHARED
    concurrency: int = 1
    max_redeliveries: int = 3
    redelivery_delay: float = 1.0
    on_dead_letter: DeadLetterHook | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.max_redeliveries < 0:
            raise ValueError(f"max_redeliveries must be >= 0, got {self.max_redeliveries}")
        if self.redelivery_delay < 0:
            raise ValueError(f"redelivery_delay must be >= 0, got {self.redelivery_delay}")


class Consumer(ABC):
    """A running subscription handler."""

    @abstractmethod
    async def close(self) -> None:
        """Stop taking messages and wait for the in-flight ones to finish; idempotent."""


class Transport(ABC):
    """Publishes and consumes messages on named topics.

    Long-lived: ``start()`` (or ``async with``) before use, ``close()`` after; both idempotent.

    Attributes:
        max_message_bytes: the largest payload :func:`~infinitic.transport.send` publishes
            (larger ones raise :class:`~infinitic.exceptions.MessageTooLargeError` before
            anything is sent); None for no limit.
    """

    max_message_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES

    async def start(self) -> None:
        """Connect to the broker; idempotent."""

    @abstractmethod
    async def publish(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None = None,
        deliver_at: float | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        """Publish ``data`` to ``topic``; returns once the broker has persisted it.

        Args:
            key: routing key (per-key order on KEY_SHARED subscriptions).
            deliver_at: epoch seconds before which the message must not be delivered.
            properties: string properties carried with the message.
        """

    @abstractmethod
    async def subscribe(
        self,
        topic: str,
        subscription: str,
        handler: MessageHandler,
        settings: ConsumerSettings | None = None,
    ) -> Consumer:
        """Start consuming ``topic`` on ``subscription``; returns once consuming.

        Messages published before the subscription existed are delivered too (earliest).
        """

    @abstractmethod
    async def close(self) -> None:
        """Close every consumer (waiting for in-flight messages), then the connection."""

    async def backlog(self, topic: str, subscription: str) -> int | None:
        """Messages of ``topic`` that ``subscription`` has not acknowledged yet (waiting or
        being handled), or None when the broker does not tell (or the subscription does not
        exist). For monitoring: a count read now, not a guarantee."""
        return None

    def now(self) -> float:
        """The transport's clock, in epoch seconds (the reference for ``deliver_at``)."""
        import time

        return time.time()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
