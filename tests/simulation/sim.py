"""A deterministic simulation of workers, broker and storage (after FoundationDB's and
TigerBeetle's simulation testing).

Everything runs in one event loop, driven by one seeded random generator:

- ``SimBroker`` is a Transport for every simulated process (``SimTransport`` facades). It keeps
  each subscription's messages and hands them to handlers when the scheduler says so: any due
  message (so messages are reordered), to any consumer of any process (as pulsar-lite's Shared
  subscriptions and Pulsar's rebalanced Key_Shared ones do), one message per key at a time
  inside a process (as the real consumers do). It delays some messages, delivers some twice
  (a lost acknowledgement), redelivers what a handler failed, postpones what it asked to
  postpone, and dead-letters what failed too often.
- Every publish and every storage operation made by a handler is a *gate*: the handler stops
  there until the scheduler resumes it, so handlers of several processes interleave at every
  point where real ones could (between a send and the store that follows it, say).
- A *crash* cancels every handler of a process at its gate (unacknowledged messages come back,
  counted as redeliveries) and replaces the process with a new worker (empty caches).
- The clock is virtual: it moves when nothing else can run.

Ids, ``random`` and the clock are seeded, so a failing seed replays exactly (with the same
``PYTHONHASHSEED``).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import random
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from infinitic.common import _ids
from infinitic.storage import (
    InMemoryKeySetStorage,
    InMemoryKeyValueStorage,
    KeySetPage,
    KeySetStorage,
    KeyValueStorage,
    Storage,
    VersionedValue,
)
from infinitic.transport import (
    Consumer,
    ConsumerSettings,
    MessageHandler,
    RetryLater,
    SubscriptionType,
    Transport,
    TransportMessage,
)

EPOCH = 1_700_000_000.0
_process: contextvars.ContextVar[int | None] = contextvars.ContextVar("sim_process", default=None)


@dataclass
class Faults:
    """How hostile the simulated world is."""

    duplicate: float = 0.05  # a handled message is delivered again (its ack was lost)
    delay: float = 0.2  # a published message is held for a random while
    max_delay: float = 0.3  # seconds
    crashes: int = 2  # processes crashed (and replaced) during a run
    crash_chance: float = 0.002  # per scheduling step, while crashes remain


@dataclass
class _Item:
    message: TransportMessage
    due: float
    order: int


@dataclass
class _SimConsumer(Consumer):
    broker: SimBroker
    process: int
    topic: str
    subscription: str
    handler: MessageHandler
    settings: ConsumerSettings
    in_flight: list[str | None] = field(default_factory=list)  # keys being handled
    closed: bool = False

    async def close(self) -> None:
        self.closed = True

    def can_take(self, item: _Item) -> bool:
        if self.closed or len(self.in_flight) >= self.settings.concurrency:
            return False
        keyed = self.settings.type is SubscriptionType.KEY_SHARED
        return not (keyed and item.message.key is not None and item.message.key in self.in_flight)


class _Sub:
    def __init__(self, topic: str, name: str) -> None:
        self.topic = topic
        self.name = name
        self.items: list[_Item] = []
        self.consumers: list[_SimConsumer] = []


@dataclass
class DeadLetter:
    topic: str
    message: TransportMessage
    reason: str


class SimBroker:
    """The simulated broker and scheduler; see the module docstring."""

    def __init__(self, rng: random.Random, faults: Faults) -> None:
        self.rng = rng
        self.faults = faults
        self.now = EPOCH
        self._subs: dict[str, dict[str, _Sub]] = {}
        self._backlog: dict[str, list[TransportMessage]] = {}
        self._gates: list[tuple[int, asyncio.Future[None]]] = []
        self._actors: dict[int, list[asyncio.Task[None]]] = {}
        self._ids = itertools.count(1)
        self.dead_letters: list[DeadLetter] = []
        self.deliveries = 0
        self.steps = 0

    # -- the transport side ---------------------------------------------------------------

    async def gate(self) -> None:
        """Stop the calling handler until the scheduler resumes it (no-op outside handlers)."""
        process = _process.get()
        if process is None:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gates.append((process, future))
        await future

    async def publish(
        self, topic: str, data: bytes, key: str | None, deliver_at: float | None
    ) -> None:
        await self.gate()
        message = TransportMessage(
            topic=topic,
            data=bytes(data),
            key=key,
            message_id=str(next(self._ids)),
            publish_time=self.now,
        )
        subs = self._subs.get(topic)
        if not subs:
            self._backlog.setdefault(topic, []).append(message)
            return
        for sub in subs.values():
            self._enqueue(sub, message, deliver_at or 0.0)

    def _enqueue(self, sub: _Sub, message: TransportMessage, due: float) -> None:
        due = max(due, self.now)
        if self.rng.random() < self.faults.delay:
            due += self.rng.uniform(0, self.faults.max_delay)
        sub.items.append(_Item(message, due, next(self._ids)))

    def subscribe(
        self,
        process: int,
        topic: str,
        subscription: str,
        handler: MessageHandler,
        settings: ConsumerSettings,
    ) -> _SimConsumer:
        subs = self._subs.setdefault(topic, {})
        sub = subs.get(subscription)
        if sub is None:
            sub = subs[subscription] = _Sub(topic, subscription)
            for message in self._backlog.pop(topic, []):
                self._enqueue(sub, message, 0.0)
        consumer = _SimConsumer(self, process, topic, subscription, handler, settings)
        sub.consumers.append(consumer)
        return consumer

    # -- the scheduler --------------------------------------------------------------------

    async def settle(self) -> None:
        """Let every handler run until it waits at a gate or ends."""
        loop = asyncio.get_running_loop()
        for _ in range(100_000):
            await asyncio.sleep(0)
            if not loop._ready:  # type: ignore[attr-defined]
                return
        raise AssertionError("the simulation does not settle: something loops without a gate")

    def _deliverable(self) -> list[tuple[_Sub, _Item, list[_SimConsumer]]]:
        out = []
        for subs in self._subs.values():
            for sub in subs.values():
                for item in sub.items:
                    if item.due <= self.now:
                        takers = [c for c in sub.consumers if c.can_take(item)]
                        if takers:
                            out.append((sub, item, takers))
        return out

    def _next_due(self) -> float | None:
        dues = [i.due for subs in self._subs.values() for s in subs.values() for i in s.items]
        return min(dues) if dues else None

    async def step(self, crash: Callable[[int], Any] | None, processes: Sequence[int]) -> bool:
        """Take one scheduling decision; False when nothing can happen any more."""
        await self.settle()
        self.steps += 1
        if (
            crash is not None
            and self.faults.crashes > 0
            and processes
            and self.rng.random() < self.faults.crash_chance
        ):
            self.faults.crashes -= 1
            await crash(self.rng.choice(list(processes)))
            return True
        deliverable = self._deliverable()
        choices = len(self._gates) + len(deliverable)
        if choices == 0:
            due = self._next_due()
            if due is None:
                return False
            self.now = max(self.now, due)
            return True
        self.now += self.rng.uniform(0, 0.002)
        pick = self.rng.randrange(choices)
        if pick < len(self._gates):
            _, future = self._gates.pop(pick)
            if not future.done():
                future.set_result(None)
            return True
        sub, item, takers = deliverable[pick - len(self._gates)]
        sub.items.remove(item)
        consumer = self.rng.choice(takers)
        self._start(sub, item, consumer)
        return True

    def _start(self, sub: _Sub, item: _Item, consumer: _SimConsumer) -> None:
        self.deliveries += 1
        consumer.in_flight.append(item.message.key)
        context = contextvars.copy_context()
        context.run(_process.set, consumer.process)
        task = asyncio.get_running_loop().create_task(
            self._handle(sub, item, consumer), context=context
        )
        tasks = self._actors.setdefault(consumer.process, [])
        tasks.append(task)
        task.add_done_callback(lambda t: tasks.remove(t) if t in tasks else None)

    async def _handle(self, sub: _Sub, item: _Item, consumer: _SimConsumer) -> None:
        message = item.message
        again: TransportMessage | None = None
        due = self.now
        try:
            await consumer.handler(message)
            if self.rng.random() < self.faults.duplicate:
                again = replace(message, redelivery_count=message.redelivery_count + 1)
        except RetryLater as later:
            again, due = message, self.now + later.delay
        except asyncio.CancelledError:  # crashed: never acknowledged
            again = replace(message, redelivery_count=message.redelivery_count + 1)
        except Exception as e:
            settings = consumer.settings
            if message.redelivery_count >= settings.max_redeliveries:
                reason = f"{type(e).__name__}: {e}"
                self.dead_letters.append(DeadLetter(sub.topic, message, reason))
                if settings.on_dead_letter is not None:
                    await settings.on_dead_letter(message, reason)
            else:
                again = replace(message, redelivery_count=message.redelivery_count + 1)
                due = self.now + settings.redelivery_delay
        finally:
            consumer.in_flight.remove(message.key)
        if again is not None:
            sub.items.append(_Item(again, due, next(self._ids)))

    async def crash(self, process: int) -> None:
        """Cancel every handler of ``process`` and remove its consumers."""
        for subs in self._subs.values():
            for sub in subs.values():
                for c in sub.consumers:
                    if c.process == process:
                        c.closed = True
                sub.consumers = [c for c in sub.consumers if c.process != process]
        self._gates = [(p, f) for p, f in self._gates if p != process]
        for task in list(self._actors.get(process, [])):
            task.cancel()
        await self.settle()

    def pending(self) -> int:
        return sum(len(s.items) for subs in self._subs.values() for s in subs.values())

    def idle(self) -> bool:
        """Nothing to deliver, nothing being handled."""
        return self.pending() == 0 and not any(self._actors.values())


class SimTransport(Transport):
    """One simulated process's connection to the SimBroker."""

    def __init__(self, broker: SimBroker, process: int) -> None:
        self._broker = broker
        self._process = process

    def now(self) -> float:
        return self._broker.now

    async def publish(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None = None,
        deliver_at: float | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        await self._broker.publish(topic, data, key, deliver_at)

    async def subscribe(
        self,
        topic: str,
        subscription: str,
        handler: MessageHandler,
        settings: ConsumerSettings | None = None,
    ) -> Consumer:
        settings = settings or ConsumerSettings()
        return self._broker.subscribe(self._process, topic, subscription, handler, settings)

    async def close(self) -> None:
        pass


class _GatedKeyValue(KeyValueStorage):
    def __init__(self, broker: SimBroker, inner: InMemoryKeyValueStorage) -> None:
        self._broker = broker
        self.inner = inner

    async def get(self, key: str) -> VersionedValue | None:
        await self._broker.gate()
        return await self.inner.get(key)

    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        await self._broker.gate()
        return await self.inner.put(key, value, expected_version=expected_version)

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        await self._broker.gate()
        await self.inner.delete(key, expected_version=expected_version)


class _GatedKeySet(KeySetStorage):
    def __init__(self, broker: SimBroker, inner: InMemoryKeySetStorage) -> None:
        self._broker = broker
        self.inner = inner

    async def add(self, key: str, member: str) -> None:
        await self._broker.gate()
        await self.inner.add(key, member)

    async def remove(self, key: str, member: str) -> None:
        await self._broker.gate()
        await self.inner.remove(key, member)

    async def page(self, key: str, *, after: str | None = None, limit: int = 1000) -> KeySetPage:
        await self._broker.gate()
        return await self.inner.page(key, after=after, limit=limit)

    async def count(self, key: str) -> int:
        await self._broker.gate()
        return await self.inner.count(key)


def gated_storage(broker: SimBroker) -> tuple[Storage, InMemoryKeyValueStorage]:
    """A storage whose every operation is a gate; and its ungated inside, for inspection."""
    kv, ks = InMemoryKeyValueStorage(), InMemoryKeySetStorage()
    return Storage(_GatedKeyValue(broker, kv), _GatedKeySet(broker, ks)), kv


def seed_everything(seed: int) -> random.Random:
    """Seed ``random`` and the id generator; return the simulation's own generator."""
    rng = random.Random(seed)
    random.seed(seed)
    ids = random.Random(seed ^ 0x5EED)
    clock = itertools.count(int(EPOCH * 1e9), 1_000_000)
    _ids._last_ms = 0  # type: ignore[attr-defined]
    _ids._counter = 0  # type: ignore[attr-defined]
    _ids._pool.clear()  # type: ignore[attr-defined]
    _ids.time = types.SimpleNamespace(time_ns=lambda: next(clock))  # type: ignore[attr-defined]
    _ids.os = types.SimpleNamespace(urandom=ids.randbytes)  # type: ignore[attr-defined]
    return rng


def restore_ids() -> None:
    import os
    import time

    _ids.time = time  # type: ignore[attr-defined]
    _ids.os = os  # type: ignore[attr-defined]
    _ids._pool.clear()  # type: ignore[attr-defined]
