"""Settings of the Pulsar transport, shaped like Infinitic's ``transport.pulsar`` configuration.

Every field has a snake_case name and a camelCase alias, so a YAML section such as::

    pulsar:
      brokerServiceUrl: pulsar://localhost:6650
      webServiceUrl: http://localhost:8080
      tenant: infinitic
      namespace: dev
      authentication: {token: "..."}
      producer: {maxPendingMessages: 1000}
      consumer: {receiverQueueSize: 100}
      policies: {retentionTimeInMinutes: 10080}

validates as :class:`PulsarSettings`, and so does the same data with snake_case keys.

Secure defaults: the token is a SecretStr (masked in reprs), the TLS host name is verified
unless turned off, :attr:`PulsarSettings.token_over_plain_http` says when the token would reach
the admin API unencrypted, and an embedded broker's data directory is private to its owner
(:func:`private_data_dir`, :data:`EMBEDDED_UMASK`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel

BrokerFlavor = Literal["auto", "pulsar", "pulsar-lite"]
RetryMode = Literal["republish", "nack"]

# An embedded broker's data directory holds every message: only its owner may read it.
EMBEDDED_DATA_DIR_MODE = 0o700
EMBEDDED_DATA_FILE_MODE = 0o600
# The umask for the broker process and the files written beside it (config, log, pid), so
# that what the broker creates is 0700 / 0600 as well.
EMBEDDED_UMASK = 0o077


def private_data_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) if needed and make it ``0700``; return it.

    An existing directory named explicitly as the broker's data directory is narrowed to
    ``0700`` too (only its owner can chmod it; any other owner raises PermissionError).

    Raises:
        OSError: the directory cannot be created or its mode cannot be set.
    """
    directory = Path(path)
    directory.mkdir(mode=EMBEDDED_DATA_DIR_MODE, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o777 != EMBEDDED_DATA_DIR_MODE:
        directory.chmod(EMBEDDED_DATA_DIR_MODE)
    return directory


def write_private_file(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` to ``path`` readable and writable by its owner only (``0600``).

    Raises:
        OSError: the file cannot be written.
    """
    target = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, EMBEDDED_DATA_FILE_MODE)
    try:
        os.fchmod(fd, EMBEDDED_DATA_FILE_MODE)  # an older file keeps its mode through O_CREAT
        os.write(fd, raw)
    finally:
        os.close(fd)
    return target


class _Section(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class PulsarAuthentication(_Section):
    """Authentication against the broker and the admin REST API.

    Attributes:
        token: a JWT sent as ``Authorization: Bearer <token>`` (token authentication).
        tls_certificate_file_path: client certificate for mutual TLS.
        tls_private_key_file_path: the private key of that certificate.
    """

    token: SecretStr | None = None
    tls_certificate_file_path: str | None = None
    tls_private_key_file_path: str | None = None


class PulsarProducerSettings(_Section):
    """Producer tuning.

    Attributes:
        max_pending_messages: sends in flight per transport (an asyncio semaphore) and the
            client's per-producer queue size.
        send_timeout_seconds: a send not confirmed by the broker within this time fails.
        batching_enabled: batch messages (``KeyBased`` batching so a batch never mixes keys);
            off by default because ``publish`` waits for the broker's receipt of each message.
        batching_max_publish_delay_ms: how long a batch may wait for more messages.
        compression_type: one of NONE, LZ4, ZLib, ZSTD, SNAPPY.
        chunking_enabled: split payloads above the broker's message size limit (forces
            batching off).
    """

    max_pending_messages: int = Field(default=1000, ge=1)
    send_timeout_seconds: float = Field(default=30.0, gt=0)
    batching_enabled: bool = False
    batching_max_publish_delay_ms: int = Field(default=10, ge=0)
    compression_type: Literal["NONE", "LZ4", "ZLib", "ZSTD", "SNAPPY"] = "NONE"
    chunking_enabled: bool = False


class PulsarConsumerSettings(_Section):
    """Consumer tuning (shared by every subscription of a transport).

    Attributes:
        receiver_queue_size: messages prefetched per consumer on SHARED subscriptions.
        key_shared_receiver_queue_size: prefetch on real-Pulsar Key_Shared subscriptions
            (kept small: large queues stall Key_Shared dispatch).
        max_buffered_messages: messages received but not yet finished per consumer, beyond
            ``concurrency`` (bounds memory; the rest waits in the broker).
        retry_mode: ``republish`` acknowledges a failed message and republishes it with an
            attempt counter to the subscription's retry topic (works everywhere, never relies
            on broker nacks); ``nack`` negatively acknowledges it (real Pulsar, SHARED only;
            KEY_SHARED subscriptions always republish).
        delay_hold_seconds: a message due within this many seconds is held unacknowledged
            in memory until due; a later one is parked: on Apache Pulsar on the retry topic,
            with a native ``deliver_at``; on pulsar-lite, which has no delayed delivery, on a
            park topic (see ``park_recheck_seconds``).
        max_held_messages: delayed messages held in memory per consumer (the receive loop
            waits when it is reached, so memory stays bounded).
        max_held_bytes: payload bytes of the delayed messages held in memory per consumer
            (32 MiB; a count alone is no bound: 100 messages of 5 MB are 500 MB); past it,
            as past ``max_held_messages``, the next ones wait in the broker or are parked,
            with a warning. A message larger than this is held alone.
        park_recheck_seconds: pulsar-lite: the wait of the shortest of the 8 park topics of
            a subscription; park topic k waits ``park_recheck_seconds * 2**k``. A parked
            message costs nothing while it waits, and one republish each time it is looked
            at: at most about ``2 * log2(delay / park_recheck_seconds)`` times (13 for an
            hour with the defaults), plus one per longest wait (21 min by default) of delay
            beyond twice the longest wait. A message due within ``delay_hold_seconds + 2 *
            park_recheck_seconds`` is held in memory instead. Apache Pulsar: how long a
            message that came back early from the retry topic is held before it is parked
            again.
        unacked_redelivery_allowance: broker redeliveries (after a crash or a close while
            the message was unacknowledged) tolerated beyond ``max_redeliveries`` before the
            message is dead-lettered without being handled again. Default: 3 on Apache
            Pulsar, 1000 on pulsar-lite, whose count also grows at each failed attempt to
            dispatch to a consumer of a dead connection (dozens in a few seconds), so a low
            allowance there dead-letters healthy messages after a worker crash.
        subscribe_retries: attempts to subscribe when the broker answers with a timeout
            (pulsar-lite's consumer-id collision between processes).
        consumer_id_offset: pulsar-lite only: consumer ids burnt at start-up so that
            several processes do not collide on a subscription (pulsar-lite keys consumers by
            the id each client numbers from 0). Default: a random number below 256, so two
            processes collide once in 256 (a collision then costs one subscribe timeout);
            give each process a distinct value (0, 100, 200, ...) to rule it out.
        loop_timer_slack_ns: Linux: the timer slack (``prctl(PR_SET_TIMERSLACK)``) given to
            the thread running the transport's event loop when it starts, unless its slack
            is shorter already; None leaves it alone. The C++ client looks for a prefetched
            message with a zero-timeout wait, which the default slack (50 µs) turns into a
            50-60 µs sleep of the event loop at each look at an empty queue.
    """

    receiver_queue_size: int = Field(default=100, ge=1)
    key_shared_receiver_queue_size: int = Field(default=10, ge=1)
    max_buffered_messages: int = Field(default=64, ge=1)
    retry_mode: RetryMode = "republish"
    delay_hold_seconds: float = Field(default=5.0, ge=0)
    max_held_messages: int = Field(default=100, ge=1)
    max_held_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    park_recheck_seconds: float = Field(default=10.0, gt=0)
    unacked_redelivery_allowance: int | None = Field(default=None, ge=0)
    subscribe_retries: int = Field(default=5, ge=1)
    consumer_id_offset: int | None = Field(default=None, ge=0)
    loop_timer_slack_ns: int | None = Field(default=1000, ge=1)


class PulsarPolicies(_Section):
    """Namespace policies applied when the transport creates the namespace (real Pulsar).

    Attributes:
        force_infinitic_policies: apply them to an existing namespace too.
        message_ttl_in_seconds: unacknowledged messages older than this are dropped.
        retention_time_in_minutes: acknowledged messages are kept this long...
        retention_size_in_mb: ...within this size.
        deduplication_enabled: broker-side producer deduplication.
        delayed_delivery_enabled: native delayed delivery (``deliver_at``).
        delayed_delivery_tick_time_millis: the broker's delay tracker granularity.
        topic_partitions: partitions of each created topic (0: non-partitioned).
    """

    force_infinitic_policies: bool = False
    message_ttl_in_seconds: int = Field(default=14 * 24 * 3600, ge=0)
    retention_time_in_minutes: int = Field(default=7 * 24 * 60, ge=-1)
    retention_size_in_mb: int = Field(default=1024, ge=-1)
    deduplication_enabled: bool = True
    delayed_delivery_enabled: bool = True
    delayed_delivery_tick_time_millis: int = Field(default=1000, ge=1)
    topic_partitions: int = Field(default=0, ge=0)


class PulsarSettings(_Section):
    """How to reach Pulsar and how to use it.

    Attributes:
        broker_service_url: ``pulsar://host:6650`` or ``pulsar+ssl://host:6651``.
        web_service_url: ``http(s)://host:8080``; when set, the tenant, the namespace (with
            ``policies``) and the topics are created through the admin REST API.
        tenant: the Pulsar tenant.
        namespace: the Pulsar namespace inside the tenant.
        broker_flavor: ``pulsar`` (Apache Pulsar), ``pulsar-lite`` (the dev broker: its
            workarounds are enabled) or ``auto`` (``pulsar-lite`` when no web service URL is
            configured, else ``pulsar``).
        allowed_clusters: clusters of a created tenant (default: every cluster).
        admin_roles: admin roles of a created tenant.
        operation_timeout_seconds: the client's operation timeout.
        connection_timeout_seconds: the client's connection timeout.
        io_threads: the client's I/O threads.
        tls_allow_insecure_connection: accept any server certificate.
        tls_enable_hostname_verification: check the server certificate's host name (on by
            default; turn it off only for a certificate that does not name its host).
        tls_trust_certs_file_path: CA bundle for the server certificate.
        authentication: token or client-certificate authentication.
        producer: producer tuning.
        consumer: consumer tuning.
        policies: namespace policies.
    """

    broker_service_url: str = "pulsar://localhost:6650"
    web_service_url: str | None = None
    tenant: str = "infinitic"
    namespace: str = "dev"
    broker_flavor: BrokerFlavor = "auto"
    allowed_clusters: list[str] = Field(default_factory=list)
    admin_roles: list[str] = Field(default_factory=list)
    operation_timeout_seconds: int = Field(default=10, ge=1)
    connection_timeout_seconds: float = Field(default=10.0, gt=0)
    io_threads: int = Field(default=1, ge=1)
    tls_allow_insecure_connection: bool = False
    tls_enable_hostname_verification: bool = True
    tls_trust_certs_file_path: str | None = None
    authentication: PulsarAuthentication = Field(default_factory=PulsarAuthentication)
    producer: PulsarProducerSettings = Field(default_factory=PulsarProducerSettings)
    consumer: PulsarConsumerSettings = Field(default_factory=PulsarConsumerSettings)
    policies: PulsarPolicies = Field(default_factory=PulsarPolicies)

    @field_validator("broker_service_url")
    @classmethod
    def _check_broker_url(cls, value: str) -> str:
        if not value.startswith(("pulsar://", "pulsar+ssl://")):
            raise ValueError(f"brokerServiceUrl must start with pulsar(+ssl)://: {value}")
        return value

    @field_validator("web_service_url")
    @classmethod
    def _check_web_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"webServiceUrl must start with http:// or https://: {value}")
        return value.rstrip("/") if value else None

    @property
    def token_over_plain_http(self) -> bool:
        """True when a token is set and the admin API URL is ``http://``: the token would
        travel unencrypted (the admin client logs a warning)."""
        return (
            self.authentication.token is not None
            and self.web_service_url is not None
            and self.web_service_url.startswith("http://")
        )

    @property
    def is_pulsar_lite(self) -> bool:
        """True when the pulsar-lite workarounds are on."""
        if self.broker_flavor == "auto":
            return self.web_service_url is None
        return self.broker_flavor == "pulsar-lite"
