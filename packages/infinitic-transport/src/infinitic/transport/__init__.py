"""Infinitic for Python: the broker-agnostic transport interface and the in-memory transport."""

from infinitic.transport._in_memory import DeadLetter, InMemoryTransport
from infinitic.transport._interfaces import (
    DEAD_LETTER_SUFFIX,
    DLQ_DELIVERIES_PROPERTY,
    DLQ_ERROR_PROPERTY,
    DLQ_ORIGINAL_TOPIC_PROPERTY,
    Consumer,
    ConsumerSettings,
    MessageHandler,
    SubscriptionType,
    Transport,
    TransportMessage,
    dead_letter_topic,
)
from infinitic.transport._outbox import Outbox, Outgoing, send

__all__ = [
    "DEAD_LETTER_SUFFIX",
    "DLQ_DELIVERIES_PROPERTY",
    "DLQ_ERROR_PROPERTY",
    "DLQ_ORIGINAL_TOPIC_PROPERTY",
    "Consumer",
    "ConsumerSettings",
    "DeadLetter",
    "InMemoryTransport",
    "MessageHandler",
    "Outbox",
    "Outgoing",
    "SubscriptionType",
    "Transport",
    "TransportMessage",
    "dead_letter_topic",
    "send",
]
