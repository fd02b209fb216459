"""A running subscription: receive loops, workers, delays, retries and dead letters.

Each subscription reads the topic itself and the subscription's retry topic
(``<topic>-<subscription>-retry``), where failed messages wait for their next attempt; on
pulsar-lite also its park topics (see :mod:`._parking`). A receive loop per topic takes a slot
(bounded by ``concurrency + max_buffered_messages``) before each receive, so memory is bounded
and the rest waits in the broker. It never cancels a pending ``receive()``: a cancelled receive
would swallow the next message (PULSAR-LITE.md, section 9).

Due times are enforced here, whatever the broker does: a message due soon is held unacknowledged
(at most ``max_held_messages`` and ``max_held_bytes``, :mod:`._held`; the loop waits when that
is reached). On Apache Pulsar a message
due later is republished to the retry topic with its native ``deliver_at`` and acknowledged: the
broker keeps it until due (and messages arrive due, so this seldom happens). pulsar-lite has no
delayed delivery: there a message due later is republished to a park topic and acknowledged,
and looked at again after that topic's wait, a number of times that grows with the logarithm
of its delay; in between it costs nothing. A parked message is acknowledged only once its new
copy is confirmed by the broker, so a crash loses nothing.

Receiving and acknowledging avoid thread hops: a message the C++ client has already prefetched
is taken with a non-blocking receive on the event loop's thread, only an empty queue waits for
the client's I/O thread (its completion comes through the transport's :class:`LoopBridge`), and
acknowledgements are local calls (the client groups them). ``pulsar.asyncio`` would instead
wake the loop from the I/O thread for every receive and every acknowledgement; its consumer
still opens and closes the subscription, and serves every call on a client version that does
not expose the C++ consumer it wraps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

import pulsar
import pulsar.asyncio as pa

from infinitic.transport import (
    DLQ_DELIVERIES_PROPERTY,
    DLQ_ERROR_PROPERTY,
    DLQ_ORIGINAL_TOPIC_PROPERTY,
    Consumer,
    ConsumerSettings,
    MessageHandler,
    RetryLater,
    SubscriptionType,
    dead_letter_topic,
)
from infinitic.transport_pulsar._bridge import LoopBridge, settle
from infinitic.transport_pulsar._envelope import (
    ATTEMPTS,
    DELIVER_AT,
    LOOK_AT,
    PARKED_AT,
    Envelope,
)
from infinitic.transport_pulsar._held import HeldBudget
from infinitic.transport_pulsar._memory import release_after
from infinitic.transport_pulsar._parking import ParkingLadder, park_topic
from infinitic.transport_pulsar._ready import ReadyQueue
from infinitic.transport_pulsar._settings import PulsarConsumerSettings

logger = logging.getLogger("infinitic.transport_pulsar")


class _Broker(Protocol):
    """What a consumer needs from its transport."""

    def now(self) -> float: ...

    @property
    def is_pulsar_lite(self) -> bool: ...

    async def _republish(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None,
        properties: dict[str, str],
        deliver_at_ms: int | None = None,
    ) -> None: ...

    async def _open_consumer(
        self, topic: str, subscription: str, settings: ConsumerSettings
    ) -> pa.Consumer: ...


class _Source:
    """One Pulsar consumer and its single pending receive."""

    def __init__(
        self, consumer: pa.Consumer, topic: str, *, retry: bool, bridge: LoopBridge
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.retry = retry
        self.pending: asyncio.Future[Any] | None = None
        # Called (on the loop's thread) with a message a waiting receive got: returns what
        # the receive completes with (ROUTED: the message is queued for a handler already).
        self.on_message: Callable[[Any], Any] | None = None
        self._bridge = bridge
        # The C++ consumer pulsar.asyncio wraps (its methods are the binding's public ones).
        native = getattr(consumer, "_consumer", None)
        usable = all(
            hasattr(native, name)
            for name in ("receive", "receive_async", "acknowledge", "negative_acknowledge")
        )
        self.native: Any = native if usable else None
        # The last look found nothing prefetched: the next one is a receive that waits (it
        # completes at once if a message came meanwhile). A look at an empty queue is a C++
        # call that raises, and each C++ call may hand the GIL to the client's I/O thread.
        self.idle = False

    def receive_nowait(self) -> Any:
        """A message the client has already prefetched, or None (then await :meth:`receive`)."""
        if self.native is None or self.idle:
            return None
        try:
            return self.native.receive(0)
        except Exception:  # Timeout: nothing prefetched; closed: the waiting receive says so
            self.idle = True
            return None

    def receive(self) -> asyncio.Future[Any]:
        """Start a receive that waits for the next message."""
        if self.native is None:
            waiting: asyncio.Future[Any] = asyncio.ensure_future(self.consumer.receive())
            return waiting
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done = functools.partial(self._bridge.post, _received, future, self.on_message)
        self.native.receive_async(done)
        # Completed at once (a message was prefetched; see LoopBridge.post): more may follow,
        # so the next look is a non-blocking receive again.
        self.idle = not future.done()
        return future

    async def acknowledge(self, raw: Any) -> None:
        if self.native is None:
            await self.consumer.acknowledge(raw)
        else:
            self.native.acknowledge(raw)

    async def negative_acknowledge(self, raw: Any) -> None:
        if self.native is None:
            await self.consumer.negative_acknowledge(raw)
        else:
            self.native.negative_acknowledge(raw)


#: What a receive completes with when its message was queued for a handler at once.
ROUTED = object()


def _received(
    future: asyncio.Future[Any],
    on_message: Callable[[Any], Any] | None,
    result: pulsar.Result,
    message: Any,
) -> None:
    error = None if result == pulsar.Result.Ok else pa.PulsarException(result)
    # A done future: the consumer closed, and the message stays unacknowledged.
    if error is None and on_message is not None and not future.done():
        try:
            message = on_message(message)
        except Exception:  # the receive loop routes it (and logs what fails there)
            logger.exception("cannot queue a message at once; the receive loop routes it")
    settle(future, error, message)


class PulsarConsumer(Consumer):
    """A subscription being consumed; built by :meth:`PulsarTransport.subscribe`."""

    def __init__(
        self,
        broker: _Broker,
        topic: str,
        subscription: str,
        retry_topic: str,
        handler: MessageHandler,
        settings: ConsumerSettings,
        tuning: PulsarConsumerSettings,
        bridge: LoopBridge,
        *,
        use_nack: bool,
        crash_allowance: int = 3,
    ) -> None:
        self._broker = broker
        self._topic = topic
        self._subscription = subscription
        self._retry_topic = retry_topic
        self._handler = handler
        self._settings = settings
        self._tuning = tuning
        self._bridge = bridge
        self._use_nack = use_nack and settings.type is not SubscriptionType.KEY_SHARED
        # Only this copy's broker redeliveries count: a copy republished after a failure or a
        # postponement starts again at 0, and failures are counted apart (see _failed).
        # Messages merely buffered by a consumer that crashed are redelivered too, so the
        # allowance must cover a few crashes; a message that keeps killing its consumer still
        # ends dead-lettered.
        self._redelivery_limit = settings.max_redeliveries + crash_allowance
        self._ready = ReadyQueue(keyed=settings.type is SubscriptionType.KEY_SHARED)
        self._slots = asyncio.Semaphore(settings.concurrency + tuning.max_buffered_messages)
        self._held = HeldBudget(topic, tuning.max_held_messages, tuning.max_held_bytes)
        # Far-future messages wait on park topics where the broker cannot delay them.
        self._ladder = (
            ParkingLadder.of(tuning.park_recheck_seconds, tuning.delay_hold_seconds)
            if broker.is_pulsar_lite
            else None
        )
        self._sources: list[_Source] = []
        self._pumps: list[asyncio.Task[None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._holders: set[asyncio.Task[None]] = set()
        self._closing = False
        self._closed = asyncio.Event()

    @property
    def held_count(self) -> int:
        """How many delayed messages this consumer holds in memory now."""
        return self._held.count

    @property
    def held_bytes(self) -> int:
        """The payload bytes of the delayed messages this consumer holds in memory now."""
        return self._held.bytes

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the topic, its retry topic and its park topics (on pulsar-lite), then
        start receiving."""
        try:
            for topic, retry in ((self._topic, False), (self._retry_topic, True)):
                consumer = await self._broker._open_consumer(
                    topic, self._subscription, self._settings
                )
                self._sources.append(_Source(consumer, topic, retry=retry, bridge=self._bridge))
            parked = await self._open_park_sources()
        except BaseException:
            await self._close_sources()
            raise
        name = f"{self._topic}:{self._subscription}"
        for source in self._sources[:2]:
            source.on_message = functools.partial(self._route_at_once, source)
            self._pumps.append(asyncio.create_task(self._pump(source), name=f"pump:{name}"))
        for level, source in enumerate(parked):
            self._pumps.append(
                asyncio.create_task(self._pump_parked(source, level), name=f"park:{name}:{level}")
            )
        for i in range(self._settings.concurrency):
            self._workers.append(asyncio.create_task(self._work(), name=f"worker:{name}:{i}"))

    async def close(self) -> None:
        """Stop receiving, wait for the handlers running now, then close the subscription.

        Messages received but not handled yet are left unacknowledged: the broker delivers
        them again. Idempotent.
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            for task in (*self._pumps, *self._holders):
                task.cancel()
            await asyncio.gather(*self._pumps, *self._holders, return_exceptions=True)
            await self._ready.close()
            await asyncio.gather(*self._workers, return_exceptions=True)
        finally:
            await self._close_sources()
            self._closed.set()

    async def _close_sources(self) -> None:
        for source in self._sources:
            try:
                await source.consumer.close()
            except Exception as e:
                logger.warning("error while closing a consumer of %s: %s", source.topic, e)
            if source.pending is not None:
                # Completes with AlreadyClosed (or a message the broker redelivers).
                source.pending.add_done_callback(_swallow)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait({source.pending}, timeout=1.0)

    # -- receiving ------------------------------------------------------------------------

    async def _receive(self, source: _Source) -> Any:
        """Return the next message, or None once the consumer is closed."""
        while True:
            if source.pending is None:
                raw = source.receive_nowait()
                if raw is not None:
                    return raw
                source.pending = source.receive()
            pending = source.pending
            try:
                if source.native is None:
                    # A task of pulsar.asyncio's receive: waiting, unlike awaiting it, never
                    # cancels the receive itself (it is done when awaited below).
                    await asyncio.wait({pending})
                # Our own future, completed by the C++ callback, is awaited directly (a wait
                # costs a waiter, callbacks and a turn of the loop more). Only close() cancels
                # this pump, which cancels the future, not the receive: a message it then gets
                # stays unacknowledged, and the broker delivers it again once the consumer is
                # closed.
                raw = await pending
            except pa.PulsarException as e:
                source.pending = None
                if self._closing or "AlreadyClosed" in str(e):
                    return None
                logger.warning("receive failed on %s: %s; retrying", source.topic, e)
                await asyncio.sleep(0.5)
                continue
            source.pending = None
            return raw

    async def _pump(self, source: _Source) -> None:
        while not self._closing:
            await self._slots.acquire()
            try:
                raw = await self._receive(source)
            except BaseException:
                self._slots.release()
                raise
            if raw is None:
                self._slots.release()
                return
            if raw is not ROUTED:  # else queued as it came, its handler woken then
                if not isinstance(raw, Envelope):  # (an envelope: not ready when it came)
                    raw = Envelope.wrap(
                        raw, source, topic=self._topic, from_retry_topic=source.retry
                    )
                await self._route_or_nack(raw, "a message")
            # Let the handler woken for it start before looking for the next message: a look
            # at an empty queue costs about 0.1 ms (the C++ client raises a timeout).
            await asyncio.sleep(0)

    def _release_slot(self, envelope: Envelope) -> None:
        if envelope.holds_slot:
            envelope.holds_slot = False
            self._slots.release()

    def _route_at_once(self, source: _Source, raw: Any) -> Any:
        """Queue a message a waiting receive got, when it is ready for a handler: its handler
        starts a turn of the event loop sooner than through the receive loop. Returns ROUTED,
        or the message's envelope for the receive loop to route (dead letters, delays)."""
        envelope = Envelope.wrap(raw, source, topic=self._topic, from_retry_topic=source.retry)
        if self._closing or not self._ready_now(envelope):
            return envelope
        self._ready.put_nowait(envelope)
        self._ready.wake()
        return ROUTED

    def _ready_now(self, envelope: Envelope) -> bool:
        """Whether a received message goes to a handler now: its properties are possible, it
        is within its redeliveries and it is due."""
        return (
            envelope.problem is None
            and envelope.broker_redeliveries <= self._redelivery_limit
            and (envelope.due_ms is None or envelope.due_ms <= int(self._broker.now() * 1000))
        )

    async def _route_or_nack(self, envelope: Envelope, what: str) -> None:
        try:
            await self._route(envelope)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("cannot route %s of %s", what, self._topic)
            await self._nack(envelope)

    async def _route(self, envelope: Envelope) -> None:
        """Queue a received message for a handler, or dead-letter or delay it."""
        if self._ready_now(envelope):
            await self._ready.put(envelope)
            return
        if envelope.problem is not None:
            await self._dead_letter(envelope, envelope.problem)
            return
        if envelope.broker_redeliveries > self._redelivery_limit:
            reason = (
                f"delivered {envelope.broker_redeliveries + 1} times without being acknowledged "
                "(the consumer crashed or closed while holding it)"
            )
            await self._dead_letter(envelope, reason)
            return
        await self._delay(envelope, int(self._broker.now() * 1000))

    # -- delays ---------------------------------------------------------------------------

    async def _delay(self, envelope: Envelope, now_ms: int) -> None:
        assert envelope.due_ms is not None
        if self._ladder is not None:
            await self._delay_without_broker(envelope, now_ms, self._ladder)
            return
        hold_ms = int(self._tuning.delay_hold_seconds * 1000)
        recheck_ms = int(self._tuning.park_recheck_seconds * 1000)
        remaining = envelope.due_ms - now_ms
        # Due before the next look at a parked message would happen: hold it if there is room.
        if remaining <= hold_ms or (
            remaining <= hold_ms + recheck_ms and self._held.has_room(envelope.size)
        ):
            wake_ms = envelope.due_ms
        else:
            parked_at = envelope.parked_at_ms
            if not envelope.from_retry_topic or now_ms - parked_at >= recheck_ms:
                await self._park(envelope, now_ms)
                return
            # Parked a moment ago and back already (no native delays): wait before looking again.
            wake_ms = min(parked_at + recheck_ms, envelope.due_ms - hold_ms)
        await self._start_holding(envelope, wake_ms)

    async def _start_holding(self, envelope: Envelope, wake_ms: int) -> None:
        """Hold a message in memory, looked at again at ``wake_ms``, once there is room (the
        calling receive loop waits until then)."""
        size = envelope.size
        await self._held.acquire(size)
        self._release_slot(envelope)
        task = asyncio.create_task(self._hold(envelope, wake_ms, size))
        self._holders.add(task)
        task.add_done_callback(self._holders.discard)

    async def _hold(self, envelope: Envelope, wake_ms: int, size: int) -> None:
        assert envelope.due_ms is not None
        if self._ladder is not None:
            keep_ms = self._ladder.near_ms
        else:
            keep_ms = int(
                (self._tuning.delay_hold_seconds + self._tuning.park_recheck_seconds) * 1000
            )
        try:
            await asyncio.sleep(max(0.0, wake_ms / 1000 - self._broker.now()))
            while True:
                now_ms = int(self._broker.now() * 1000)
                if envelope.due_ms <= now_ms:
                    await self._ready.put(envelope)
                    return
                # No longer due soon (a parked message looked at again, or the clock went back).
                if envelope.due_ms - now_ms > keep_ms:
                    await self._park_again(envelope, now_ms)
                    return
                # Timers may fire a little early: never hand the message over before it is due.
                await asyncio.sleep(max(0.001, envelope.due_ms / 1000 - self._broker.now()))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("cannot reschedule a delayed message of %s", self._topic)
        finally:
            self._held.release(size)

    async def _park_again(self, envelope: Envelope, now_ms: int) -> None:
        assert envelope.due_ms is not None
        if self._ladder is None:
            await self._park(envelope, now_ms)
            return
        level = self._ladder.level_for(envelope.due_ms - now_ms)
        await self._park_on(envelope, 0 if level is None else level, now_ms)

    async def _park(self, envelope: Envelope, now_ms: int) -> None:
        """Move a far-future message to the retry topic (republish, then acknowledge)."""
        assert envelope.due_ms is not None
        await self._broker._republish(
            self._retry_topic,
            envelope.data(),
            key=envelope.key,
            properties=envelope.republish_properties(**{PARKED_AT: str(now_ms)}),
            deliver_at_ms=envelope.due_ms,
        )
        await self._ack(envelope)

    # -- parking, where the broker cannot delay (pulsar-lite) ---------------------------

    async def _open_park_sources(self) -> list[_Source]:
        """Subscribe to the park topics (none on brokers with delayed delivery); they are
        added to the sources as they open, so a failure closes them too."""
        if self._ladder is None:
            return []
        topics = [
            park_topic(self._topic, self._subscription, level)
            for level in range(self._ladder.levels)
        ]
        opened = await asyncio.gather(
            *(self._broker._open_consumer(t, self._subscription, self._settings) for t in topics),
            return_exceptions=True,
        )
        sources: list[_Source] = []
        for topic, consumer in zip(topics, opened, strict=True):
            if not isinstance(consumer, BaseException):
                sources.append(_Source(consumer, topic, retry=True, bridge=self._bridge))
        self._sources.extend(sources)
        for consumer in opened:
            if isinstance(consumer, BaseException):
                raise consumer
        return sources

    async def _delay_without_broker(
        self, envelope: Envelope, now_ms: int, ladder: ParkingLadder
    ) -> None:
        """Hold a message due soon, park one due later on the level that fits its delay."""
        assert envelope.due_ms is not None
        remaining = envelope.due_ms - now_ms
        level = ladder.level_for(remaining)
        if level is not None:
            await self._park_on(envelope, level, now_ms)
            return
        if (
            remaining > ladder.hold_ms
            and not self._held.has_room(envelope.size)
            and not envelope.from_retry_topic
        ):
            # Held messages fill every place (or the byte budget): rather than stop this
            # topic's loop until one is due, let the retry topic's loop wait for a place.
            await self._park(envelope, now_ms)
            return
        await self._start_holding(envelope, envelope.due_ms)

    async def _park_on(self, envelope: Envelope, level: int, now_ms: int) -> None:
        """Republish a message to park topic ``level``, to be looked at after that level's
        wait, then acknowledge it (only once the broker has the copy)."""
        assert self._ladder is not None
        look_ms = now_ms + self._ladder.wait_ms(level)
        await self._broker._republish(
            park_topic(self._topic, self._subscription, level),
            envelope.data(),
            key=envelope.key,
            properties=envelope.republish_properties(
                **{PARKED_AT: str(now_ms), LOOK_AT: str(look_ms)}
            ),
            deliver_at_ms=envelope.due_ms,
        )
        await self._ack(envelope)

    async def _pump_parked(self, source: _Source, level: int) -> None:
        """Look at the messages of one park topic in order, each at its look time.

        They were parked in order with the same wait, so waiting for the head never makes a
        message behind it late; the others wait in the broker meanwhile.
        """
        assert self._ladder is not None
        wait_ms = self._ladder.wait_ms(level)
        hold_ms = self._ladder.hold_ms
        while not self._closing:
            raw = await self._receive(source)
            if raw is None:
                return
            envelope = Envelope.wrap(raw, source, topic=self._topic, from_retry_topic=True)
            envelope.holds_slot = False
            if envelope.problem is not None:  # its look time cannot be trusted: no wait
                await self._slots.acquire()
                envelope.holds_slot = True
                await self._dead_letter(envelope, envelope.problem)
                continue
            now_ms = int(self._broker.now() * 1000)
            look_ms = envelope.look_at_ms or envelope.parked_at_ms + wait_ms
            if envelope.due_ms is not None:
                look_ms = min(look_ms, envelope.due_ms - hold_ms)
            # Never longer than the level's wait from now (a clock that jumped, a setting
            # that changed).
            look_ms = min(look_ms, now_ms + wait_ms)
            if look_ms > now_ms:
                await asyncio.sleep((look_ms - now_ms) / 1000)
            await self._slots.acquire()
            envelope.holds_slot = True
            await self._route_or_nack(envelope, "a parked message")

    # -- handling -------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            envelope = await self._ready.get()
            if envelope is None:
                return
            try:
                await self._handle(envelope)
            finally:
                await self._ready.done(envelope)

    async def _handle(self, envelope: Envelope) -> None:
        message = envelope.to_transport_message()
        try:
            await self._handler(message)
        except asyncio.CancelledError:
            self._release_slot(envelope)
            raise
        except RetryLater as later:
            try:
                await self._later(envelope, later)
            except Exception as e:
                logger.warning("cannot postpone a message of %s: %s", self._topic, e)
                await self._nack(envelope)
        except Exception as error:
            try:
                await self._failed(envelope, error)
            except Exception as e:
                logger.error("cannot retry or dead-letter a message of %s: %s", self._topic, e)
                await self._nack(envelope)
        else:
            await self._ack(envelope)

    def _failures(self, envelope: Envelope) -> int:
        """The handler failures of a message so far: recorded on its republished copies, and
        counted by the broker when failures are negative acknowledgements."""
        return envelope.attempts + (envelope.broker_redeliveries if self._use_nack else 0)

    async def _failed(self, envelope: Envelope, error: Exception) -> None:
        count = self._failures(envelope)
        if count >= self._settings.max_redeliveries:
            await self._dead_letter(envelope, f"{type(error).__name__}: {error}")
            return
        logger.info(
            "message %s of %s failed (delivery %d), retrying in %ss: %s: %s",
            envelope.origin_id,
            self._topic,
            count + 1,
            self._settings.redelivery_delay,
            type(error).__name__,
            error,
        )
        if self._use_nack:
            await self._nack(envelope)
            return
        await self._retry_later(envelope, self._settings.redelivery_delay, failures=count + 1)

    async def _later(self, envelope: Envelope, later: RetryLater) -> None:
        """A message that came too early: its failure count is kept (postponing is not
        failing).

        Due within ``delay_hold_seconds``, it is held here unacknowledged (when there is room)
        and handed to a handler again when due: no trip through the retry topic, two broker
        messages whose round trip was longer than the short waits asked for (an outcome that
        came a millisecond before the state expecting it). Otherwise, and while closing, it is
        republished to the retry topic as a delayed message is. A process that dies holding
        it leaves it unacknowledged: the broker delivers it again.
        """
        logger.debug("message %s of %s postponed: %s", envelope.origin_id, self._topic, later)
        if (
            not self._closing
            and later.delay <= self._tuning.delay_hold_seconds
            and self._held.has_room(envelope.size)
        ):
            # Held as a delayed message is (never handed over before due: rounded up)
            envelope.due_ms = math.ceil((self._broker.now() + later.delay) * 1000)
            await self._start_holding(envelope, envelope.due_ms)
            return
        await self._retry_later(envelope, later.delay, failures=self._failures(envelope))

    async def _retry_later(self, envelope: Envelope, delay: float, *, failures: int) -> None:
        """Republish a message to the retry topic, due after ``delay`` seconds with
        ``failures`` recorded, then acknowledge it."""
        now_ms = int(self._broker.now() * 1000)
        due_ms = now_ms + int(delay * 1000)
        changes = {ATTEMPTS: str(failures), DELIVER_AT: str(due_ms), PARKED_AT: str(now_ms)}
        await self._broker._republish(
            self._retry_topic,
            envelope.data(),
            key=envelope.key,
            properties=envelope.republish_properties(**changes),
            deliver_at_ms=due_ms,
        )
        await self._ack(envelope)

    async def _dead_letter(self, envelope: Envelope, reason: str) -> None:
        logger.error(
            "message %s of %s dead-lettered after %d deliveries: %s",
            envelope.origin_id,
            self._topic,
            envelope.redelivery_count + 1,
            reason,
        )
        properties = envelope.user_properties()
        properties[DLQ_ERROR_PROPERTY] = reason[:2000]
        properties[DLQ_ORIGINAL_TOPIC_PROPERTY] = envelope.topic
        properties[DLQ_DELIVERIES_PROPERTY] = str(envelope.redelivery_count + 1)
        await self._broker._republish(
            dead_letter_topic(envelope.topic),
            envelope.data(),
            key=envelope.key,
            properties=properties,
        )
        await self._ack(envelope)
        hook = self._settings.on_dead_letter
        if hook is not None:
            try:
                await hook(envelope.to_transport_message(), reason)
            except Exception:
                logger.exception("dead-letter hook of %s failed", self._topic)

    async def _ack(self, envelope: Envelope) -> None:
        try:
            await envelope.source.acknowledge(envelope.raw)
        except Exception as e:  # at-least-once: the broker delivers it again
            logger.warning("cannot acknowledge a message of %s: %s", self._topic, e)
        finally:
            self._release_slot(envelope)
            envelope.payload = None
            release_after(envelope.size)

    async def _nack(self, envelope: Envelope) -> None:
        try:
            await envelope.source.negative_acknowledge(envelope.raw)
        except Exception as e:
            logger.warning("cannot negatively acknowledge a message of %s: %s", self._topic, e)
        finally:
            self._release_slot(envelope)
            envelope.payload = None
            release_after(envelope.size)


def _swallow(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
