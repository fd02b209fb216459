"""Transport builders for the ``transport:`` section, registered as ``infinitic.transports``
entry points (``pulsar`` and ``pulsarLite``).

``pulsar`` takes :class:`PulsarSettings` fields (camelCase or snake_case), plus ``embedded``::

    transport:
      pulsar:
        brokerServiceUrl: pulsar://pulsar.example.com:6650
        webServiceUrl: http://pulsar.example.com:8080
        tenant: infinitic
        namespace: prod

    transport:
      pulsar:
        embedded: {port: 6650, dataDir: ./pulsar-data}   # or just: embedded: true

Infinitic's spellings are accepted too: a ``client:`` section (its keys are PulsarSettings
fields) and ``policies`` named ``messageTTLSeconds``, ``retentionTimeMinutes``,
``retentionSizeMB``.

``pulsarLite: {port: 6650, dataDir: ./pulsar-data, namespace: dev}`` is the same as the second
form. A worker starts the embedded pulsar-lite broker and stops it when it closes; a client only
connects to it, so clients need its ``port``. A second worker on the same ``dataDir`` while the
first runs joins the first's broker (and launches it again if the first exits) instead of
starting its own (see :class:`EmbeddedPulsarLite`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from infinitic.exceptions import ConfigurationError
from infinitic.transport import Transport, TransportContext
from infinitic.transport_pulsar._embedded import EmbeddedPulsarLite
from infinitic.transport_pulsar._settings import PulsarSettings
from infinitic.transport_pulsar._transport import PulsarTransport


class EmbeddedBrokerOptions(BaseModel):
    """Options of an embedded pulsar-lite broker.

    Attributes:
        port: the TCP port on 127.0.0.1 (default: a free one; clients then cannot find it).
        data_dir: where messages are kept (default: a temporary directory removed on stop).
        log_level: the broker's log level (its log is ``<dataDir>/broker.log``).
        heal_connection_resets: restart the broker after a client's connection was reset
            (see :class:`EmbeddedPulsarLite`).
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    port: int | None = Field(default=None, ge=1, le=65535)
    data_dir: str | None = None
    log_level: str = "warn"
    heal_connection_resets: bool = True


class EmbeddedBrokerTransport(PulsarTransport):
    """A Pulsar transport that starts its own pulsar-lite broker and stops it on close (or
    joins the broker another live process owns on the same data directory, and leaves it)."""

    def __init__(self, settings: PulsarSettings, broker: EmbeddedPulsarLite) -> None:
        super().__init__(settings)
        self.broker = broker

    async def start(self) -> None:
        """Start the broker (if needed), then connect; idempotent."""
        if not self.broker.started and not self._closed:
            await self.broker.start()
            self.settings = self.settings.model_copy(
                update={"broker_service_url": self.broker.service_url}
            )
        await super().start()

    async def close(self) -> None:
        """Close the transport, then stop the broker (unless another process owns it);
        idempotent."""
        try:
            await super().close()
        finally:
            await self.broker.stop()


def _norm(key: object) -> str:
    return str(key).replace("_", "").replace("-", "").lower()


# Infinitic's names of namespace policies, as PulsarPolicies' fields
_POLICY_NAMES = {
    "messagettlseconds": "message_ttl_in_seconds",
    "retentiontimeminutes": "retention_time_in_minutes",
    "retentionsizemb": "retention_size_in_mb",
}
_REFUSED_POLICIES = {
    "timerttlseconds": "timers and other delayed messages live on the workflows' own topics "
    "here, under the namespace's messageTTLSeconds",
    "delayedttlseconds": "delayed messages live on the workflows' own topics here, under the "
    "namespace's messageTTLSeconds",
}


def _infinitic_keys(options: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Infinitic's spelling of some settings as PulsarSettings reads them: the ``client:``
    section's keys (``operationTimeoutSeconds``, ``ioThreads``...) at the top level, and
    ``policies`` named as Infinitic names them (``messageTTLSeconds``, ``retentionTimeMinutes``,
    ``retentionSizeMB``).

    Raises:
        ConfigurationError: a key this transport does not support, with the reason.
    """
    data: dict[str, Any] = {}
    for key, value in options.items():
        if _norm(key) == "client" and isinstance(value, Mapping):
            for inner, inner_value in value.items():
                if any(_norm(k) == _norm(inner) for k in options):
                    raise ConfigurationError(
                        f"{path}.{key}.{inner}: set twice ({path}.{inner} too); keep one"
                    )
                data[inner] = inner_value
        elif _norm(key) == "policies" and isinstance(value, Mapping):
            policies: dict[str, Any] = {}
            for inner, inner_value in value.items():
                reason = _REFUSED_POLICIES.get(_norm(inner))
                if reason is not None:
                    raise ConfigurationError(f"{path}.{key}.{inner} is not supported: {reason}")
                policies[_POLICY_NAMES.get(_norm(inner), str(inner))] = inner_value
            data[key] = policies
        else:
            data[key] = value
    return data


def _config_error(path: str, error: ValidationError) -> ConfigurationError:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        problems.append(f"{path}.{where}: {item['msg']}" if where else f"{path}: {item['msg']}")
    return ConfigurationError("invalid configuration: " + "; ".join(problems))


def _build(
    options: Mapping[str, Any], context: TransportContext, embedded: Any, *, lite: bool
) -> Transport:
    try:
        broker = (
            EmbeddedBrokerOptions.model_validate({} if embedded is True else embedded)
            if embedded not in (None, False)
            else None
        )
    except ValidationError as e:
        raise _config_error(context.path if lite else f"{context.path}.embedded", e) from e
    settings_data = _infinitic_keys(options, context.path)
    if broker is not None:
        settings_data.setdefault("brokerFlavor", "pulsar-lite")
        if broker.port is not None:
            settings_data["brokerServiceUrl"] = f"pulsar://127.0.0.1:{broker.port}"
    try:
        settings = PulsarSettings.model_validate(settings_data)
    except ValidationError as e:
        raise _config_error(context.path, e) from e
    if broker is None:
        return PulsarTransport(settings)
    if context.role != "worker":
        if broker.port is None:
            raise ConfigurationError(
                f"{context.path}: a client connects to the worker's embedded broker and needs "
                f"its port: set {context.path}{'' if lite else '.embedded'}.port"
            )
        return PulsarTransport(settings)
    return EmbeddedBrokerTransport(
        settings,
        EmbeddedPulsarLite(
            port=broker.port,
            data_dir=broker.data_dir,
            log_level=broker.log_level,
            heal_connection_resets=broker.heal_connection_resets,
        ),
    )


def pulsar_transport_from_config(
    options: Mapping[str, Any], context: TransportContext
) -> Transport:
    """Build the transport of a ``transport.pulsar`` section (the ``pulsar`` entry point)."""
    data = dict(options)
    embedded = data.pop("embedded", None)
    return _build(data, context, embedded, lite=False)


# EmbeddedBrokerOptions' keys, lower case without underscores (``dataDir``, ``data_dir``)
_BROKER_KEYS = {"port", "datadir", "loglevel", "healconnectionresets"}


def pulsar_lite_transport_from_config(
    options: Mapping[str, Any], context: TransportContext
) -> Transport:
    """Build the transport of a ``transport.pulsarLite`` section (an embedded broker)."""

    def is_broker_key(key: object) -> bool:
        return str(key).lower().replace("_", "") in _BROKER_KEYS

    broker = {k: v for k, v in options.items() if is_broker_key(k)}
    rest = {k: v for k, v in options.items() if not is_broker_key(k)}
    return _build(rest, context, broker or True, lite=True)
