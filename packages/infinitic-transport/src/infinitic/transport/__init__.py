"""Infinitic for Python: the broker-agnostic transport interface and the in-memory transport."""

import importlib.metadata

from infinitic.transport._clock import ManualClock
from infinitic.transport._config import (
    TRANSPORT_ENTRY_POINTS,
    TransportBuilder,
    TransportContext,
    transport_from_config,
)
from infinitic.transport._env import (
    ENV_PREFIX,
    InfiniticEnvSource,
    InfiniticSettings,
    apply_env_overrides,
    describe_validation_error,
    normalize_key,
)
from infinitic.transport._in_memory import DeadLetter, InMemoryTransport
from infinitic.transport._interfaces import (
    DEAD_LETTER_SUFFIX,
    DEFAULT_MAX_MESSAGE_BYTES,
    DLQ_DELIVERIES_PROPERTY,
    DLQ_ERROR_PROPERTY,
    DLQ_ORIGINAL_TOPIC_PROPERTY,
    Consumer,
    ConsumerSettings,
    DeadLetterHook,
    MessageHandler,
    RetryLater,
    SubscriptionType,
    Transport,
    TransportMessage,
    dead_letter_topic,
)
from infinitic.transport._outbox import Outbox, Outgoing, describe, encode_checked, send
from infinitic.transport._wait_line import WaitLine

__version__: str = importlib.metadata.version("infinitic-transport")

__all__ = [
    "DEAD_LETTER_SUFFIX",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DLQ_DELIVERIES_PROPERTY",
    "DLQ_ERROR_PROPERTY",
    "DLQ_ORIGINAL_TOPIC_PROPERTY",
    "ENV_PREFIX",
    "TRANSPORT_ENTRY_POINTS",
    "Consumer",
    "ConsumerSettings",
    "DeadLetter",
    "DeadLetterHook",
    "InMemoryTransport",
    "InfiniticEnvSource",
    "InfiniticSettings",
    "ManualClock",
    "MessageHandler",
    "Outbox",
    "Outgoing",
    "RetryLater",
    "SubscriptionType",
    "Transport",
    "TransportBuilder",
    "TransportContext",
    "TransportMessage",
    "WaitLine",
    "apply_env_overrides",
    "dead_letter_topic",
    "describe",
    "describe_validation_error",
    "encode_checked",
    "normalize_key",
    "send",
    "transport_from_config",
]
