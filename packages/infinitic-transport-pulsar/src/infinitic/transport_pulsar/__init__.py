"""Infinitic for Python: the Apache Pulsar transport.

:class:`PulsarTransport` implements :class:`infinitic.transport.Transport` on Apache Pulsar (the
production target) and on pulsar-lite (a small dev broker, see :class:`EmbeddedPulsarLite`).
"""

import importlib.metadata

from infinitic.transport_pulsar._embedded import EmbeddedPulsarLite
from infinitic.transport_pulsar._errors import PulsarAdminError, PulsarTransportError
from infinitic.transport_pulsar._settings import (
    PulsarAuthentication,
    PulsarConsumerSettings,
    PulsarPolicies,
    PulsarProducerSettings,
    PulsarSettings,
)
from infinitic.transport_pulsar._topics import escape_name, unescape_name
from infinitic.transport_pulsar._transport import PulsarTransport

__version__: str = importlib.metadata.version("infinitic-transport-pulsar")

__all__ = [
    "EmbeddedPulsarLite",
    "PulsarAdminError",
    "PulsarAuthentication",
    "PulsarConsumerSettings",
    "PulsarPolicies",
    "PulsarProducerSettings",
    "PulsarSettings",
    "PulsarTransport",
    "PulsarTransportError",
    "escape_name",
    "unescape_name",
]
