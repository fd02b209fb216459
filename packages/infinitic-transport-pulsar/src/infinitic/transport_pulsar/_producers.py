"""One producer per topic, created on first use, with a bound on sends in flight.

A send goes to the C++ producer that ``pulsar.asyncio`` wraps, with a callback that reaches the
event loop through the transport's :class:`LoopBridge`: one wake-up settles every receipt that
arrived meanwhile, where ``pulsar.asyncio`` wakes the loop once per send. On a client version
without that C++ producer, sends go through ``pulsar.asyncio``.

``pulsar.asyncio`` sends fail with ``ProducerQueueIsFull`` when too many are pending, and the
client's ``block_if_queue_full`` would block the event loop inside C++; an asyncio semaphore
bounds the sends in flight instead.

A message the transport republishes (a retry, a parked or a dead-lettered copy) must reach its
topic whatever its size: it may have been published chunked, and a copy gains properties. Those
go through :meth:`ProducerPool.send_any_size`, which uses a chunking producer (batching off)
for a copy too big for the topic's usual producer.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pulsar
import pulsar.asyncio as pa

from infinitic.transport_pulsar._bridge import LoopBridge, settle
from infinitic.transport_pulsar._errors import PulsarTransportError
from infinitic.transport_pulsar._settings import PulsarProducerSettings

_pulsar: Any
try:  # the C++ binding pulsar-client is built on (untyped)
    _pulsar = importlib.import_module("_pulsar")
except ImportError:  # pragma: no cover - every pulsar-client release so far ships it
    _pulsar = None

logger = logging.getLogger("infinitic.transport_pulsar")

#: A republished copy larger than this (payload and properties) goes through a chunking
#: producer: the broker's limit is 5 MiB by default, and a message's metadata counts too.
CHUNK_ABOVE_BYTES = 5 * 1024 * 1024 - 16 * 1024


class MessageTooBigError(PulsarTransportError):
    """The client refused a message over the broker's size limit."""


_COMPRESSION = {
    "NONE": pulsar.CompressionType.NONE,
    "LZ4": pulsar.CompressionType.LZ4,
    "ZLib": pulsar.CompressionType.ZLib,
    "ZSTD": pulsar.CompressionType.ZSTD,
    "SNAPPY": pulsar.CompressionType.SNAPPY,
}


class ProducerPool:
    """Producers of one client, by Pulsar topic.

    Args:
        client: the producing client (separate from the consuming one).
        bridge: where send receipts reach the event loop.
        settings: producer tuning.
        prepare_topic: awaited once per topic before its producer exists (admin set-up).
    """

    def __init__(
        self,
        client: pa.Client,
        bridge: LoopBridge,
        settings: PulsarProducerSettings,
        prepare_topic: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._bridge = bridge
        self._settings = settings
        self._prepare = prepare_topic
        self._producers: dict[str, pa.Producer] = {}
        self._natives: dict[str, Any] = {}
        self._chunking: dict[str, pa.Producer] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._in_flight = asyncio.Semaphore(settings.max_pending_messages)
        # Producer names must be unique per topic across the cluster.
        self._name_prefix = f"infinitic-{uuid.uuid4().hex[:12]}"
        self._counter = itertools.count()
        self._closed = False

    async def _producer(self, topic: str, *, chunking: bool = False) -> pa.Producer:
        producers = self._chunking if chunking else self._producers
        producer = producers.get(topic)
        if producer is not None:
            return producer
        lock = self._locks.setdefault(topic, asyncio.Lock())
        async with lock:
            producer = producers.get(topic)
            if producer is not None:
                return producer
            if self._closed:
                raise PulsarTransportError(f"cannot publish to {topic}: the transport is closed")
            if self._prepare is not None and topic not in self._producers:
                await self._prepare(topic)
            s = self._settings
            chunking = chunking or s.chunking_enabled
            batching = s.batching_enabled and not chunking
            try:
                producer = await self._client.create_producer(
                    topic,
                    producer_name=f"{self._name_prefix}-{next(self._counter)}",
                    send_timeout_millis=int(s.send_timeout_seconds * 1000),
                    compression_type=_COMPRESSION[s.compression_type],
                    max_pending_messages=s.max_pending_messages,
                    block_if_queue_full=False,
                    batching_enabled=batching,
                    batching_max_publish_delay_ms=s.batching_max_publish_delay_ms,
                    # A batch never mixes keys, so Key_Shared keeps per-key routing.
                    batching_type=pulsar.BatchingType.KeyBased,
                    chunking_enabled=chunking,
                )
            except pa.PulsarException as e:
                raise PulsarTransportError(f"cannot create a producer on {topic}: {e}") from e
            producers[topic] = producer
            if producers is self._producers:
                self._natives[topic] = _native_producer(producer)
            return producer

    async def send(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None,
        properties: Mapping[str, str],
        deliver_at_ms: int | None = None,
        event_timestamp_ms: int | None = None,
    ) -> None:
        """Send one message and wait for the broker's receipt.

        Raises:
            PulsarTransportError: the broker refused or the send timed out.
        """
        producer = self._producers.get(topic) or await self._producer(topic)
        native = self._natives.get(topic)
        if native is not None:
            async with self._in_flight:
                await self._send_native(
                    native, topic, data, key, properties, deliver_at_ms, event_timestamp_ms
                )
            return
        kwargs: dict[str, Any] = {"properties": dict(properties)}
        if key is not None:
            kwargs["partition_key"] = key
        if deliver_at_ms is not None:
            kwargs["deliver_at"] = deliver_at_ms
        if event_timestamp_ms is not None:
            kwargs["event_timestamp"] = event_timestamp_ms
        async with self._in_flight:
            await _send_with(producer, topic, data, kwargs)

    async def send_any_size(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None,
        properties: Mapping[str, str],
        deliver_at_ms: int | None = None,
    ) -> None:
        """Send a copy of a received message, chunked when it is too big to go whole.

        Raises:
            PulsarTransportError: the broker refused or the send timed out.
        """
        size = len(data) + sum(len(k) + len(v) for k, v in properties.items())
        if size <= CHUNK_ABOVE_BYTES or self._settings.chunking_enabled:
            try:
                await self.send(
                    topic, data, key=key, properties=properties, deliver_at_ms=deliver_at_ms
                )
                return
            except MessageTooBigError:
                pass  # the broker's limit is lower than ours: chunk it
        producer = await self._producer(topic, chunking=True)
        kwargs: dict[str, Any] = {"properties": dict(properties)}
        if key is not None:
            kwargs["partition_key"] = key
        if deliver_at_ms is not None:
            kwargs["deliver_at"] = deliver_at_ms
        async with self._in_flight:
            await _send_with(producer, topic, data, kwargs)

    async def _send_native(
        self,
        native: Any,
        topic: str,
        data: bytes,
        key: str | None,
        properties: Mapping[str, str],
        deliver_at_ms: int | None,
        event_timestamp_ms: int | None,
    ) -> None:
        builder = _pulsar.MessageBuilder()
        builder.content(data)
        for name, value in properties.items():
            builder.property(name, value)
        if key is not None:
            builder.partition_key(key)
        if deliver_at_ms is not None:
            builder.deliver_at(deliver_at_ms)
        if event_timestamp_ms is not None:
            builder.event_timestamp(event_timestamp_ms)
        receipt: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            native.send_async(
                builder.build(), functools.partial(self._bridge.post, _receipt, receipt, topic)
            )
        except Exception as e:  # a closed producer raises before sending
            raise PulsarTransportError(f"cannot publish to {topic}: {e}") from e
        await receipt

    async def close(self) -> None:
        """Flush and close every producer; idempotent, never raises."""
        self._closed = True
        producers = [*self._producers.values(), *self._chunking.values()]
        self._producers, self._chunking, self._natives = {}, {}, {}
        for producer in producers:
            try:
                await producer.flush()
                await producer.close()
            except Exception as e:  # closing must go on for the others
                logger.warning("error while closing a Pulsar producer: %s", e)


def _native_producer(producer: pa.Producer) -> Any:
    """The C++ producer behind ``producer``, or None if this client version hides it."""
    native = getattr(producer, "_producer", None)
    usable = _pulsar is not None and hasattr(native, "send_async")
    return native if usable else None


async def _send_with(
    producer: pa.Producer, topic: str, data: bytes, kwargs: dict[str, Any]
) -> None:
    try:
        await producer.send(data, **kwargs)
    except pa.PulsarException as e:
        raise _publish_error(topic, e.error()) from e


def _publish_error(topic: str, result: pulsar.Result) -> PulsarTransportError:
    text = f"cannot publish to {topic}: {pa.PulsarException(result)}"
    if result == pulsar.Result.MessageTooBig:
        return MessageTooBigError(text)
    return PulsarTransportError(text)


def _receipt(
    receipt: asyncio.Future[None], topic: str, result: pulsar.Result, _message_id: Any
) -> None:
    error = None if result == pulsar.Result.Ok else _publish_error(topic, result)
    settle(receipt, error)
