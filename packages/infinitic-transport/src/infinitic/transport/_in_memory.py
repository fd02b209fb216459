"""The in-memory transport: every guarantee of the Transport interface, in one process.

Each subscription keeps its own queue. KEY_SHARED subscriptions keep one queue per key and hand
a key to one handler at a time, so messages of a key are processed one by one in publish order
(a negatively acknowledged message keeps its key blocked until it is redelivered, so order holds
across retries too). Messages published before a topic has any subscription wait in a backlog
that the first subscription takes over (like an "earliest" subscription on a broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from infinitic.exceptions import ConfigurationError
from infinitic.transport._backlog import DEFAULT_MAX_BACKLOG, DEFAULT_MAX_BACKLOG_BYTES, Backlog
from infinitic.transport._clock import ManualClock
from infinitic.transport._interfaces import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DLQ_DELIVERIES_PROPERTY,
    DLQ_ERROR_PROPERTY,
    DLQ_ORIGINAL_TOPIC_PROPERTY,
    Consumer,
    ConsumerSettings,
    MessageHandler,
    RetryLater,
    SubscriptionType,
    Transport,
    TransportMessage,
    dead_letter_topic,
)
from infinitic.transport._wait_line import WaitLine

logger = logging.getLogger("infinitic.transport")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered message kept for inspection."""

    original_topic: str
    message: TransportMessage
    error: str


class _Subscription:
    def __init__(self, topic: str, name: str, type_: SubscriptionType) -> None:
        self.topic = topic
        self.name = name
        self.type = type_
        self.queue: deque[TransportMessage] = deque()
        self.by_key: dict[str, deque[TransportMessage]] = {}
        self.ready_keys: deque[str] = deque()
        self.busy_keys: set[str] = set()
        self.consumers: list[_InMemoryConsumer] = []
        self.idle = WaitLine()
        self.in_flight = 0

    def _keyed(self, message: TransportMessage) -> bool:
        return self.type is SubscriptionType.KEY_SHARED and message.key is not None

    def put(self, message: TransportMessage, *, front: bool = False) -> None:
        if self._keyed(message):
            key = message.key
            assert key is not None
            q = self.by_key.get(key)
            if q is None:
                q = self.by_key[key] = deque()
            was_empty = not q
            if front:
                q.appendleft(message)
            else:
                q.append(message)
            if was_empty and key not in self.busy_keys:
                self.ready_keys.append(key)
        elif front:
            self.queue.appendleft(message)
        else:
            self.queue.append(message)

    def take(self) -> TransportMessage | None:
        if self.ready_keys:
            key = self.ready_keys.popleft()
            q = self.by_key[key]
            message = q.popleft()
            if not q:
                del self.by_key[key]
            self.busy_keys.add(key)
            return message
        if self.queue:
            return self.queue.popleft()
        return None

    def release_key(self, key: str | None) -> None:
        if key is None or key not in self.busy_keys:
            return
        self.busy_keys.discard(key)
        if key in self.by_key:
            self.ready_keys.append(key)

    def pending(self) -> int:
        return len(self.queue) + sum(len(q) for q in self.by_key.values())

    async def notify(self) -> None:
        """Wake as many idle handlers as there are runnable messages."""
        self.idle.wake(len(self.ready_keys) + len(self.queue))


class _InMemoryConsumer(Consumer):
    def __init__(
        self,
        transport: InMemoryTransport,
        sub: _Subscription,
        handler: MessageHandler,
        settings: ConsumerSettings,
    ) -> None:
        self._transport = transport
        self._sub = sub
        self._handler = handler
        self._settings = settings
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for i in range(self._settings.concurrency):
            task = asyncio.create_task(
                self._run(), name=f"infinitic-consumer:{self._sub.topic}:{self._sub.name}:{i}"
            )
            self._tasks.append(task)

    async def _next(self) -> TransportMessage | None:
        sub = self._sub
        while True:
            if self._closing:
                return None
            message = sub.take()
            if message is not None:
                sub.in_flight += 1
                return message
            await sub.idle.wait()

    async def _run(self) -> None:
        while True:
            message = await self._next()
            if message is None:
                return
            try:
                await self._process(message)
            finally:
                self._sub.in_flight -= 1

    async def _process(self, message: TransportMessage) -> None:
        sub = self._sub
        try:
            await self._handler(message)
        except asyncio.CancelledError:
            # Closed while processing: the message was not acknowledged, so it comes back.
            sub.put(message, front=True)
            sub.release_key(message.key if sub._keyed(message) else None)
            raise
        except RetryLater as later:
            # Too early: later messages of the key may go first (it is not a failure).
            sub.release_key(message.key if sub._keyed(message) else None)

            def again_later() -> None:
                sub.put(message)
                self._transport._schedule(sub.notify())

            self._transport._call_later(later.delay, again_later)
            return
        except Exception as e:
            if message.redelivery_count >= self._settings.max_redeliveries:
                reason = await self._transport._dead_letter(message, e)
                sub.release_key(message.key if sub._keyed(message) else None)
                await sub.notify()
                if self._settings.on_dead_letter is not None:
                    try:
                        await self._settings.on_dead_letter(message, reason)
                    except Exception:
                        logger.exception("dead-letter hook of %s failed", message.topic)
                return
            logger.info(
                "message %s of %s failed (delivery %d), retrying in %ss: %s: %s",
                message.message_id,
                message.topic,
                message.redelivery_count + 1,
                self._settings.redelivery_delay,
                type(e).__name__,
                e,
            )
            again = replace(message, redelivery_count=message.redelivery_count + 1)
            keyed = sub._keyed(message)

            def redeliver() -> None:
                sub.put(again, front=keyed)
                if keyed:
                    sub.release_key(message.key)
                self._transport._schedule(sub.notify())

            self._transport._call_later(self._settings.redelivery_delay, redeliver)
            return
        sub.release_key(message.key if sub._keyed(message) else None)
        if sub.ready_keys:
            await sub.notify()

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        # every idle handler of the subscription looks again: this consumer's stop, the others
        # wait again
        self._sub.idle.wake(len(self._sub.idle))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(ValueError):
            self._sub.consumers.remove(self)


class InMemoryTransport(Transport):
    """A transport living in this process's memory, for tests, demos and embedded use.

    Args:
        clock: returns the current epoch seconds; the reference for ``deliver_at``.
        max_message_bytes: the largest message :func:`~infinitic.transport.send` publishes
            (the default is the Pulsar transport's, so that a test in memory refuses what
            Pulsar would); None for no limit.
        max_backlog: the most messages kept for a topic nobody subscribed to yet (delivered to
            its first subscriber); past it the oldest are dropped, with one warning per topic.
            Events topics, which only an event listener reads, would otherwise grow for as long
            as the process runs.
        max_backlog_bytes: the most bytes (payloads, keys and properties) kept for such a
            topic (64 MiB by default); past it the oldest are dropped too, with the same
            warning. The newest message is always kept.

    Dead-lettered messages are kept and returned by :meth:`dead_letters`.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        max_message_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES,
    ) -> None:
        if max_backlog < 1:
            raise ValueError(f"max_backlog must be at least 1, got {max_backlog}")
        if max_backlog_bytes < 1:
            raise ValueError(f"max_backlog_bytes must be at least 1, got {max_backlog_bytes}")
        self.max_message_bytes = max_message_bytes
        self.max_backlog = max_backlog
        self.max_backlog_bytes = max_backlog_bytes
        self._trimmed: set[str] = set()  # topics whose backlog lost messages (warned once)
        self._clock = clock or time.time
        self._manual = isinstance(clock, ManualClock)
        self._held: list[tuple[float, int, TransportMessage]] = []  # (due, order, message)
        if isinstance(clock, ManualClock):
            clock.add_listener(self._release_due)
        self._subscriptions: dict[str, dict[str, _Subscription]] = {}
        self._backlog: dict[str, Backlog] = {}
        self._dead_letters: list[DeadLetter] = []
        self._ids = itertools.count(1)
        self._timers: set[asyncio.TimerHandle] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        self.published_count = 0

    def now(self) -> float:
        return self._clock()

    async def publish(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None = None,
        deliver_at: float | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        if self._closed:
            raise RuntimeError("InMemoryTransport is closed")
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"message data must be bytes, got {type(data).__name__}")
        message = TransportMessage(
            topic=topic,
            data=bytes(data),
            key=key,
            message_id=str(next(self._ids)),
            publish_time=self._clock(),
            properties=dict(properties or {}),
        )
        self.published_count += 1
        delay = 0.0 if deliver_at is None else deliver_at - self._clock()
        if delay > 0 and self._manual:
            assert deliver_at is not None
            heapq.heappush(self._held, (deliver_at, next(self._ids), message))
        elif delay > 0:
            self._call_later(delay, lambda: self._schedule(self._deliver(message)))
        else:
            await self._deliver(message)

    async def _deliver(self, message: TransportMessage) -> None:
        subs = self._subscriptions.get(message.topic)
        if not subs:
            backlog = self._backlog.get(message.topic)
            if backlog is None:
                backlog = Backlog(self.max_backlog, self.max_backlog_bytes)
                self._backlog[message.topic] = backlog
            bound = backlog.append(message)  # drops the oldest past a bound
            if bound is not None and message.topic not in self._trimmed:
                self._trimmed.add(message.topic)
                if bound == "max_backlog":
                    logger.warning(
                        "%s has no subscriber: only its last %d messages are kept (the oldest "
                        "are dropped; max_backlog of InMemoryTransport)",
                        message.topic,
                        self.max_backlog,
                    )
                else:
                    logger.warning(
                        "%s has no subscriber: only its last %s bytes of messages are kept "
                        "(%d messages now; the oldest are dropped; max_backlog_bytes of "
                        "InMemoryTransport)",
                        message.topic,
                        f"{self.max_backlog_bytes:,}",
                        len(backlog),
                    )
            return
        for sub in subs.values():
            sub.put(message)
            await sub.notify()

    def _release_due(self) -> None:
        now = self._clock()
        while self._held and self._held[0][0] <= now:
            _, _, message = heapq.heappop(self._held)
            self._schedule(self._deliver(message))

    def next_due(self) -> float | None:
        """With a ManualClock: when the earliest held delayed message is due (None if none)."""
        return self._held[0][0] if self._held else None

    def _call_later(self, delay: float, callback: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def run() -> None:
            self._timers.discard(handle)
            if not self._closed:
                callback()

        handle = loop.call_later(max(delay, 0.0), run)
        self._timers.add(handle)

    def _schedule(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _dead_letter(self, message: TransportMessage, error: BaseException) -> str:
        reason = f"{type(error).__name__}: {error}"
        logger.error(
            "message %s on %s dead-lettered after %d deliveries: %s",
            message.message_id,
            message.topic,
            message.redelivery_count + 1,
            reason,
        )
        self._dead_letters.append(DeadLetter(message.topic, message, reason))
        await self.publish(
            dead_letter_topic(message.topic),
            message.data,
            key=message.key,
            properties={
                **message.properties,
                DLQ_ERROR_PROPERTY: reason[:2000],
                DLQ_ORIGINAL_TOPIC_PROPERTY: message.topic,
                DLQ_DELIVERIES_PROPERTY: str(message.redelivery_count + 1),
            },
        )
        return reason

    async def subscribe(
        self,
        topic: str,
        subscription: str,
        handler: MessageHandler,
        settings: ConsumerSettings | None = None,
    ) -> Consumer:
        if self._closed:
            raise RuntimeError("InMemoryTransport is closed")
        settings = settings or ConsumerSettings()
        subs = self._subscriptions.setdefault(topic, {})
        sub = subs.get(subscription)
        if sub is None:
            sub = subs[subscription] = _Subscription(topic, subscription, settings.type)
            for message in self._backlog.pop(topic, ()):
                sub.put(message)
        elif sub.type is not settings.type:
            raise ConfigurationError(
                f"subscription {subscription!r} on {topic!r} is {sub.type.value}, "
                f"cannot consume it as {settings.type.value}"
            )
        if sub.type is SubscriptionType.EXCLUSIVE and sub.consumers:
            raise ConfigurationError(
                f"exclusive subscription {subscription!r} on {topic!r} already has a consumer"
            )
        consumer = _InMemoryConsumer(self, sub, handler, settings)
        sub.consumers.append(consumer)
        consumer.start()
        return consumer

    def dead_letters(self, topic: str | None = None) -> list[DeadLetter]:
        """Return the dead-lettered messages (of ``topic`` only, if given), oldest first."""
        return [d for d in self._dead_letters if topic is None or d.original_topic == topic]

    async def backlog(self, topic: str, subscription: str) -> int | None:
        """Messages of ``topic`` not yet acknowledged by ``subscription`` (waiting or being
        handled; a delayed one counts once due); None when the subscription does not exist."""
        sub = self._subscriptions.get(topic, {}).get(subscription)
        if sub is None:
            return None
        return sub.pending() + sub.in_flight

    def pending(self, topic: str, subscription: str) -> int:
        """Return how many messages wait on a subscription (not counting in-flight ones)."""
        sub = self._subscriptions.get(topic, {}).get(subscription)
        return sub.pending() if sub is not None else len(self._backlog.get(topic, ()))

    def idle(self) -> bool:
        """True when no message waits or is being processed on any subscription, and no
        delayed message is pending."""
        if self._timers or self._background:
            return False
        return all(
            sub.pending() == 0 and sub.in_flight == 0
            for subs in self._subscriptions.values()
            for sub in subs.values()
        )

    async def close(self) -> None:
        if self._closed:
            return
        consumers = [
            c
            for subs in self._subscriptions.values()
            for s in subs.values()
            for c in list(s.consumers)
        ]
        await asyncio.gather(*(c.close() for c in consumers), return_exceptions=True)
        self._closed = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for task in list(self._background):
            task.cancel()
