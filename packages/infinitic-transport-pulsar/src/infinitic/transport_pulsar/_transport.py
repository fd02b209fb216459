"""The Apache Pulsar transport."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pulsar
import pulsar.asyncio as pa

from infinitic.transport import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Consumer,
    ConsumerSettings,
    MessageHandler,
    SubscriptionType,
    Transport,
    dead_letter_topic,
)
from infinitic.transport_pulsar._admin import PulsarAdmin
from infinitic.transport_pulsar._bridge import LoopBridge
from infinitic.transport_pulsar._client_log import client_logger_option
from infinitic.transport_pulsar._consumer import PulsarConsumer
from infinitic.transport_pulsar._envelope import DELIVER_AT, check_properties, to_millis
from infinitic.transport_pulsar._errors import PulsarTransportError
from infinitic.transport_pulsar._producers import ProducerPool
from infinitic.transport_pulsar._settings import PulsarSettings
from infinitic.transport_pulsar._timer_slack import shorten_timer_slack
from infinitic.transport_pulsar._topics import TopicNamer

logger = logging.getLogger("infinitic.transport_pulsar")
_client_logger = logging.getLogger("infinitic.transport_pulsar.client")
# The C++ client logs every consumer and producer it opens at INFO (about a thousand lines for
# one worker start): its warnings and errors only, unless its logger's level is set (read when
# a client is created; see _client_log for how its lines reach this logger).
if _client_logger.level == logging.NOTSET:
    _client_logger.setLevel(logging.WARNING)
# Broker redeliveries tolerated beyond max_redeliveries (see unacked_redelivery_allowance).
PULSAR_CRASH_ALLOWANCE = 3
LITE_CRASH_ALLOWANCE = 1000
# Default consumer-id offsets on pulsar-lite are drawn below this (about 1 ms per id).
_RANDOM_CONSUMER_ID_OFFSETS = 256
# Consumer ids burnt per subscription at a time (see _burn_consumer_ids).
_BURN_CHUNK = 32


class PulsarTransport(Transport):
    """Publishes and consumes Infinitic messages on Apache Pulsar (or pulsar-lite).

    Logical topic names (``workflow-engine:BankWorkflow``) become
    ``persistent://<tenant>/<namespace>/<escaped name>``. Producers and consumers use separate
    clients. KEY_SHARED subscriptions are Key_Shared on Apache Pulsar and Shared on
    pulsar-lite; in both cases the messages of a key are handled one at a time, in order,
    inside a worker. Due times (``deliver_at``) are sent natively and also enforced by the
    consumer. Failed messages are retried through the subscription's retry topic (or by nack,
    with ``consumer.retry_mode="nack"``) and dead-lettered to ``<topic>-dlq``.

    Args:
        settings: connection and tuning; default: a local broker on port 6650.
        clock: epoch seconds, the reference for ``deliver_at`` (default :func:`time.time`).

    Use ``async with PulsarTransport(...)`` or ``await start()`` / ``await close()``.
    """

    def __init__(
        self,
        settings: PulsarSettings | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings or PulsarSettings()
        # Chunking producers split what the broker would refuse whole.
        self.max_message_bytes = (
            None if self.settings.producer.chunking_enabled else DEFAULT_MAX_MESSAGE_BYTES
        )
        self._clock = clock or time.time
        self._namer = TopicNamer(self.settings.tenant, self.settings.namespace)
        self._admin = PulsarAdmin(self.settings) if self.settings.web_service_url else None
        self._producer_client: pa.Client | None = None
        self._consumer_client: pa.Client | None = None
        self._producers: ProducerPool | None = None
        self._bridge: LoopBridge | None = None
        self._consumers: list[PulsarConsumer] = []
        self._start_lock = asyncio.Lock()
        self._started = False
        self._closed = False

    @classmethod
    def for_pulsar_lite(cls, broker_service_url: str, **settings: Any) -> PulsarTransport:
        """A transport for a pulsar-lite broker (e.g. :class:`EmbeddedPulsarLite`)."""
        return cls(
            PulsarSettings(
                broker_service_url=broker_service_url, broker_flavor="pulsar-lite", **settings
            )
        )

    @property
    def is_pulsar_lite(self) -> bool:
        """True when the pulsar-lite workarounds are on."""
        return self.settings.is_pulsar_lite

    def now(self) -> float:
        return self._clock()

    async def backlog(self, topic: str, subscription: str) -> int | None:
        """The subscription's backlog from the admin API (``webServiceUrl``); None without it
        (pulsar-lite has no admin API)."""
        if self._admin is None:
            return None
        local = self._namer.physical(topic).rsplit("/", 1)[-1]
        return await self._admin.backlog(local, self._namer.subscription_name(subscription))

    def physical_topic(self, topic: str) -> str:
        """Return the Pulsar name of a logical topic.

        Raises:
            ConfigurationError: the name cannot be a Pulsar topic name.
        """
        return self._namer.physical(topic)

    def _new_client(self) -> pa.Client:
        s = self.settings
        kwargs: dict[str, Any] = {
            "operation_timeout_seconds": s.operation_timeout_seconds,
            "connection_timeout_ms": int(s.connection_timeout_seconds * 1000),
            "io_threads": s.io_threads,
            "logger": client_logger_option(_client_logger),
            "tls_allow_insecure_connection": s.tls_allow_insecure_connection,
            "tls_validate_hostname": s.tls_enable_hostname_verification,
        }
        if s.tls_trust_certs_file_path:
            kwargs["tls_trust_certs_file_path"] = s.tls_trust_certs_file_path
        auth = s.authentication
        if auth.token is not None:
            kwargs["authentication"] = pulsar.AuthenticationToken(auth.token.get_secret_value())
        elif auth.tls_certificate_file_path and auth.tls_private_key_file_path:
            kwargs["authentication"] = pulsar.AuthenticationTLS(
                auth.tls_certificate_file_path, auth.tls_private_key_file_path
            )
        return pa.Client(s.broker_service_url, **kwargs)

    async def start(self) -> None:
        """Create the clients, and the tenant and namespace when an admin URL is set;
        idempotent. Publishing or subscribing starts the transport if needed.

        Raises:
            PulsarAdminError: the admin API refused the set-up.
            RuntimeError: the transport is closed.
        """
        async with self._start_lock:
            if self._closed:
                raise RuntimeError("PulsarTransport is closed")
            if self._started:
                return
            slack = self.settings.consumer.loop_timer_slack_ns
            if slack is not None:
                shorten_timer_slack(slack)  # see _timer_slack: empty looks are not sleeps
            try:
                self._producer_client = self._new_client()
                self._consumer_client = self._new_client()
                self._bridge = LoopBridge()
                self._producers = ProducerPool(
                    self._producer_client, self._bridge, self.settings.producer, self._prepare_topic
                )
                if self._admin is not None:
                    await self._admin.ensure_namespace()
                if self.is_pulsar_lite:
                    offset = self.settings.consumer.consumer_id_offset
                    if offset is None:
                        offset = random.randrange(_RANDOM_CONSUMER_ID_OFFSETS)
                    if offset:
                        await self._burn_consumer_ids(offset)
            except BaseException:
                await self._close_clients()
                raise
            self._started = True

    async def _burn_consumer_ids(self, count: int) -> None:
        # pulsar-lite keys consumers by the client-chosen id, which every client numbers from
        # 0: shifting the counter keeps processes from colliding on a subscription. The topics
        # are the same for every process (the broker keeps every topic it has seen), each
        # process on its own subscription. In chunks: one subscription to 255 topics could
        # outlast the client's operation timeout on a loaded machine, and failed the start.
        # A chunk that times out has used its ids all the same (the client numbers a consumer
        # before it asks the broker), so the burn goes on.
        assert self._consumer_client is not None
        s = self.settings
        topics = [
            f"non-persistent://{s.tenant}/{s.namespace}/__infinitic-consumer-ids-{i}"
            for i in range(count)
        ]
        for first in range(0, count, _BURN_CHUNK):
            chunk = topics[first : first + _BURN_CHUNK]
            try:
                consumer = await self._consumer_client.subscribe(
                    chunk, f"ids-{uuid.uuid4().hex[:12]}"
                )
            except (pa.PulsarException, pulsar.PulsarException) as e:
                logger.debug("burning consumer ids %d-%d: %s", first, first + len(chunk), e)
                continue
            await consumer.close()

    async def _prepare_topic(self, physical: str) -> None:
        if self._admin is not None:
            await self._admin.ensure_topic(physical.rsplit("/", 1)[-1])

    async def _send(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None,
        properties: dict[str, str],
        deliver_at_ms: int | None = None,
    ) -> None:
        if not self._started:
            await self.start()
        assert self._producers is not None
        await self._producers.send(
            self._namer.physical(topic),
            data,
            key=key,
            properties=properties,
            deliver_at_ms=deliver_at_ms,
        )

    async def _republish(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None,
        properties: dict[str, str],
        deliver_at_ms: int | None = None,
    ) -> None:
        """Send a copy of a received message (retried, parked or dead-lettered): chunked if it
        no longer fits whole."""
        if not self._started:
            await self.start()
        assert self._producers is not None
        await self._producers.send_any_size(
            self._namer.physical(topic),
            data,
            key=key,
            properties=properties,
            deliver_at_ms=deliver_at_ms,
        )

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
            key: routing key (per-key order on KEY_SHARED subscriptions); ``""`` is no key.
            deliver_at: epoch seconds; sent natively and enforced by the consumers.
            properties: string properties carried with the message.

        Raises:
            TypeError: ``data`` is not bytes or a property is not a string.
            ConfigurationError: ``topic`` cannot be a Pulsar topic name.
            PulsarTransportError: the broker refused the message or did not answer in time.
        """
        if self._closed:
            raise RuntimeError("PulsarTransport is closed")
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"message data must be bytes, got {type(data).__name__}")
        props = check_properties(properties)
        deliver_at_ms = None
        if deliver_at is not None:
            deliver_at_ms = to_millis(deliver_at)
            props[DELIVER_AT] = str(deliver_at_ms)
        await self._send(
            topic, bytes(data), key=key or None, properties=props, deliver_at_ms=deliver_at_ms
        )

    async def _open_consumer(
        self, topic: str, subscription: str, settings: ConsumerSettings
    ) -> pa.Consumer:
        assert self._consumer_client is not None
        physical = self._namer.physical(topic)
        await self._prepare_topic(physical)
        tuning = self.settings.consumer
        lite = self.is_pulsar_lite
        queue = tuning.receiver_queue_size
        if settings.type is SubscriptionType.EXCLUSIVE:
            kind = pulsar.ConsumerType.Exclusive
            if lite:
                queue = 1  # pulsar-lite duplicates on Exclusive grow with the queue size
        elif settings.type is SubscriptionType.KEY_SHARED and not lite:
            kind = pulsar.ConsumerType.KeyShared
            queue = tuning.key_shared_receiver_queue_size
        else:
            # pulsar-lite's Key_Shared stalls and loses messages: Shared, keys serialized here.
            kind = pulsar.ConsumerType.Shared
        kwargs: dict[str, Any] = {
            "consumer_type": kind,
            "receiver_queue_size": queue,
            "initial_position": pulsar.InitialPosition.Earliest,
            "negative_ack_redelivery_delay_ms": max(1, int(settings.redelivery_delay * 1000)),
            "consumer_name": f"infinitic-{uuid.uuid4().hex[:12]}",
        }
        if tuning.retry_mode == "nack" and kind == pulsar.ConsumerType.Shared:
            # A safety net behind the transport's own dead-lettering (which records the error).
            limit = settings.max_redeliveries + self._crash_allowance() + 1
            kwargs["dead_letter_policy"] = pulsar.ConsumerDeadLetterPolicy(
                max_redeliver_count=limit,
                dead_letter_topic=self._namer.physical(dead_letter_topic(topic)),
            )
        sub_name = self._namer.subscription_name(subscription)
        attempts = 1 if kind == pulsar.ConsumerType.Exclusive else tuning.subscribe_retries
        for attempt in range(1, attempts + 1):
            try:
                return await self._consumer_client.subscribe(physical, sub_name, **kwargs)
            except pa.PulsarException as e:
                # pulsar-lite answers a consumer-id collision with a timeout; the next
                # attempt takes the next id.
                if e.error() != pulsar.Result.Timeout or attempt == attempts:
                    raise PulsarTransportError(
                        f"cannot subscribe {subscription!r} to {topic!r} ({physical}): {e}"
                    ) from e
                logger.warning("subscribe to %s timed out (attempt %d), retrying", topic, attempt)
        raise AssertionError("unreachable")

    async def subscribe(
        self,
        topic: str,
        subscription: str,
        handler: MessageHandler,
        settings: ConsumerSettings | None = None,
    ) -> Consumer:
        """Start consuming ``topic`` on ``subscription``; returns once consuming.

        Messages published before the subscription existed are delivered too (earliest).

        Raises:
            ConfigurationError: the topic or subscription name is not usable on Pulsar.
            PulsarTransportError: the broker refused the subscription.
        """
        if self._closed:
            raise RuntimeError("PulsarTransport is closed")
        if not self._started:
            await self.start()
        settings = settings or ConsumerSettings()
        self._namer.physical(topic)  # fail early on a bad name
        assert self._bridge is not None
        consumer = PulsarConsumer(
            self,
            topic,
            subscription,
            TopicNamer.retry_topic(topic, subscription),
            handler,
            settings,
            self.settings.consumer,
            self._bridge,
            use_nack=self.settings.consumer.retry_mode == "nack",
            crash_allowance=self._crash_allowance(),
        )
        await consumer.start()
        self._consumers.append(consumer)
        return consumer

    def _crash_allowance(self) -> int:
        allowance = self.settings.consumer.unacked_redelivery_allowance
        if allowance is not None:
            return allowance
        return LITE_CRASH_ALLOWANCE if self.is_pulsar_lite else PULSAR_CRASH_ALLOWANCE

    async def close(self) -> None:
        """Close every consumer (waiting for in-flight messages), the producers (flushing
        them), then the clients; idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            consumers, self._consumers = self._consumers, []
            results = await asyncio.gather(*(c.close() for c in consumers), return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    logger.warning("error while closing a consumer: %s", result)
        finally:
            await self._close_clients()

    async def _close_clients(self) -> None:
        try:
            if self._producers is not None:
                await self._producers.close()
        finally:
            for client in (self._consumer_client, self._producer_client):
                if client is None:
                    continue
                try:
                    await client.close()
                except Exception as e:
                    logger.warning("error while closing a Pulsar client: %s", e)
            self._producer_client = self._consumer_client = None
            self._producers = None
            self._started = False
