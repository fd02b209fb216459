"""The event listener of a worker: reads the events topics, builds CloudEvents, calls the
listener with batches of them.

It consumes the events topics (``workflow-state-events:<W>``, ``workflow-executor-events:<W>``,
``service-executor-events:<S>``) with its own subscription, which no engine reads: a slow or
failing listener holds back only its own subscription. A message (the events of one handled
message) is acknowledged once the listener call that received its events returned; when the
call raises, every message of that batch fails and comes back (the transport's redelivery), and
after ``max_redeliveries`` failures goes to the topic's dead-letter twin: a batch is never lost.
Events are delivered at least once: a listener de-duplicates by the CloudEvent ``id``.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from infinitic.common import decode_message
from infinitic.common.events import EventBatch, service_event_topics, workflow_event_topics
from infinitic.exceptions import ConfigurationError
from infinitic.transport import (
    Consumer,
    ConsumerSettings,
    SubscriptionType,
    Transport,
    TransportMessage,
)
from infinitic.worker._config_events import EventListenerConfig

logger = logging.getLogger("infinitic.worker.events")

#: A listener: called with a batch of CloudEvents; may be a coroutine function. A sync one runs
#: in a thread, so it never blocks the worker's event loop.
EventListener = Callable[[list[CloudEvent]], Awaitable[None] | None]

#: Messages taken at once by a listener's consumer, at most (each holds several events).
MAX_IN_FLIGHT = 10_000


def source_prefix(transport: Transport) -> str:
    """The start of the CloudEvents' ``source``: the Pulsar broker, tenant and namespace
    (``pulsar://host:6650/infinitic/dev``), else the transport's kind (``inMemory``)."""
    settings = getattr(transport, "settings", None)
    url = getattr(settings, "broker_service_url", None)
    if isinstance(url, str) and url:
        tenant = getattr(settings, "tenant", "")
        namespace = getattr(settings, "namespace", "")
        return f"{url.rstrip('/')}/{tenant}/{namespace}"
    return "inMemory"


def _json_safe(value: Any) -> Any:
    """Event data as JSON values (bytes as base64 text)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    return value


def cloud_events(batch: EventBatch, prefix: str) -> list[CloudEvent]:
    """The CloudEvents of a batch, in order (ids ``<handled message id>-<index>``)."""
    events = []
    when = datetime.fromtimestamp(batch.emitted_at, UTC)
    for part in batch.parts:
        for i, record in enumerate(part.events):
            data = _json_safe(record.data)
            data["workerName"] = batch.worker_name
            data["infiniticVersion"] = batch.version
            attributes = {
                "id": f"{part.message_id}-{i}",
                "source": f"{prefix}/{record.component}/{batch.entity_name}",
                "type": record.type,
                "subject": record.subject,
                "time": when,
                "datacontenttype": "application/json",
            }
            events.append(CloudEvent(attributes, data))
    return events


def resolve_listener(listener: object, where: str) -> EventListener:
    """The callable to call: ``listener`` itself, or an instance of it when it is a class.

    Raises:
        ConfigurationError: it is not callable (naming ``where``).
    """
    if isinstance(listener, type):
        cls = listener
        try:
            listener = cls()
        except Exception as e:
            raise ConfigurationError(
                f"{where}: {cls.__name__}() failed: {type(e).__name__}: {e} (listener "
                "classes are built with no argument)"
            ) from e
    if not callable(listener):
        raise ConfigurationError(
            f"{where}: an event listener is a callable receiving a list of CloudEvents, got "
            f"{type(listener).__name__}"
        )
    return listener


class _Batcher:
    """Groups the events of consumed messages into listener calls."""

    def __init__(self, listener: EventListener, config: EventListenerConfig) -> None:
        self._listener = listener
        self._max = config.batch.max_messages
        self._seconds = config.batch.max_seconds
        self._calls = asyncio.Semaphore(config.concurrency)
        self._events: list[CloudEvent] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._is_async = inspect.iscoroutinefunction(listener) or inspect.iscoroutinefunction(
            getattr(listener, "__call__", None)  # noqa: B004 (an instance's async __call__)
        )

    async def add(self, events: list[CloudEvent]) -> None:
        """Wait until a listener call received ``events`` and returned.

        Raises:
            Exception: the listener call raised (the message is then delivered again).
        """
        if not events:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._events.extend(events)
        self._waiters.append(done)
        if len(self._events) >= self._max:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._seconds, self._flush)
        await done

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        events, self._events = self._events, []
        waiters, self._waiters = self._waiters, []
        if not events:
            return
        task = asyncio.get_running_loop().create_task(self._call(events, waiters))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _call(self, events: list[CloudEvent], waiters: list[asyncio.Future[None]]) -> None:
        try:
            await self._deliver(events, waiters)
        finally:  # canceled (the worker abandons its work): the messages come again
            for w in waiters:
                if not w.done():
                    w.set_exception(RuntimeError("event listener call canceled"))

    async def _deliver(self, events: list[CloudEvent], waiters: list[asyncio.Future[None]]) -> None:
        async with self._calls:
            try:
                if self._is_async:
                    await self._listener(events)  # type: ignore[misc]
                else:
                    await asyncio.get_running_loop().run_in_executor(None, self._listener, events)
            except Exception as e:
                logger.warning(
                    "event listener failed on a batch of %d events (%s: %s); its messages are "
                    "delivered again",
                    len(events),
                    type(e).__name__,
                    e,
                )
                for w in waiters:
                    if not w.done():
                        w.set_exception(e)
                return
        for w in waiters:
            if not w.done():
                w.set_result(None)


class EventListenerRunner:
    """One listener of a worker: its subscriptions and its batches.

    Args:
        transport: the worker's transport.
        listener: the callable.
        config: its settings.
        worker_settings: redeliveries and their delay, as the worker's other consumers.
    """

    def __init__(
        self,
        transport: Transport,
        listener: EventListener,
        config: EventListenerConfig,
        *,
        max_redeliveries: int,
        redelivery_delay: float,
    ) -> None:
        self._transport = transport
        self._config = config
        self._batcher = _Batcher(listener, config)
        self._prefix = source_prefix(transport)
        in_flight = min(MAX_IN_FLIGHT, config.batch.max_messages * config.concurrency)
        self._settings = ConsumerSettings(
            type=SubscriptionType.SHARED,
            concurrency=in_flight,
            max_redeliveries=max_redeliveries,
            redelivery_delay=redelivery_delay,
        )

    def topics(self, services: list[str], workflows: list[str]) -> list[str]:
        """The events topics listened to, given the services and workflows the worker runs."""
        topics: list[str] = []
        for s in self._config.services.chosen(services):
            topics.extend(service_event_topics(s))
        for w in self._config.workflows.chosen(workflows):
            topics.extend(workflow_event_topics(w))
        return topics

    async def start(self, services: list[str], workflows: list[str]) -> list[Consumer]:
        """Subscribe to the events topics; returns the consumers (the worker closes them)."""
        consumers = []
        for name in self.topics(services, workflows):
            consumers.append(
                await self._transport.subscribe(
                    name, self._config.subscription, self._handle, self._settings
                )
            )
        logger.info(
            "event listener on %s (subscription %s)",
            ", ".join(self.topics(services, workflows)) or "nothing",
            self._config.subscription,
        )
        return consumers

    async def _handle(self, message: TransportMessage) -> None:
        batch = decode_message(message.data)
        if not isinstance(batch, EventBatch):
            raise ValueError(f"unexpected {batch.TYPE} on the events topic {message.topic}")
        await self._batcher.add(cloud_events(batch, self._prefix))
