"""The transport contract: what every Transport implementation guarantees.

Runs against each implementation through the parametrized ``transport`` fixture. Timing
assertions check lower bounds only ("not before"), with generous waits for the upper side.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Callable

import pytest

from infinitic.transport import (
    DLQ_DELIVERIES_PROPERTY,
    DLQ_ERROR_PROPERTY,
    DLQ_ORIGINAL_TOPIC_PROPERTY,
    ConsumerSettings,
    RetryLater,
    SubscriptionType,
    Transport,
    TransportMessage,
    dead_letter_topic,
)

WAIT = 30.0  # generous: an upper bound only guards against hanging


async def until(predicate: Callable[[], bool]) -> None:
    """Wait until ``predicate()`` holds (fails the test after WAIT seconds)."""
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110 - conditions span several handlers
            await asyncio.sleep(0.02)


class Recorder:
    """A handler that records messages and lets a test wait for a number of them."""

    def __init__(self) -> None:
        self.messages: list[TransportMessage] = []
        self.times: list[float] = []
        self._changed = asyncio.Event()

    async def __call__(self, message: TransportMessage) -> None:
        self.messages.append(message)
        self.times.append(time.time())
        self._changed.set()

    async def wait_for(self, count: int, within: float = WAIT) -> list[TransportMessage]:
        async with asyncio.timeout(within):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages


async def test_round_trip_with_key_and_properties(transport: Transport, topic: str) -> None:
    rec = Recorder()
    await transport.subscribe(topic, "engine", rec)
    properties = {"type": "dispatch", "with:colon/slash": "é ü", "empty": ""}
    before = time.time()
    await transport.publish(topic, b"payload", key="wf-1", properties=properties)
    await transport.publish(topic, b"no-key")
    first, second = await rec.wait_for(2)
    assert first.topic == topic
    assert first.data == b"payload"
    assert first.key == "wf-1"
    assert dict(first.properties) == properties
    assert first.redelivery_count == 0
    assert first.message_id
    assert first.message_id != second.message_id
    assert before - 1 <= first.publish_time <= time.time() + 1
    assert second.data == b"no-key"
    assert second.key is None
    assert dict(second.properties) == {}


async def test_garbage_bytes_are_just_bytes(transport: Transport, topic: str) -> None:
    rec = Recorder()
    await transport.subscribe(topic, "engine", rec)
    payloads: list[bytes] = [bytes(range(256)) * 3, b"", b"\x00", b"\xff\xfe not msgpack \x80"]
    for payload in payloads:
        await transport.publish(topic, payload)
    received = await rec.wait_for(len(payloads))
    assert sorted(m.data for m in received) == sorted(payloads)
    assert all(type(m.data) is bytes for m in received)
    with pytest.raises(TypeError):
        await transport.publish(topic, "text is not bytes")  # type: ignore[arg-type]


async def test_backlog_published_before_subscribe_is_delivered(
    transport: Transport, topic: str
) -> None:
    for i in range(5):
        await transport.publish(topic, f"early-{i}".encode())
    rec = Recorder()
    await transport.subscribe(topic, "engine", rec)
    await transport.publish(topic, b"late")
    received = await rec.wait_for(6)
    assert sorted(m.data for m in received) == sorted(
        [f"early-{i}".encode() for i in range(5)] + [b"late"]
    )


async def test_shared_spreads_over_concurrency(transport: Transport, topic: str) -> None:
    running = 0
    peak = 0
    done: list[bytes] = []
    all_done = asyncio.Event()

    async def handler(message: TransportMessage) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1
        done.append(message.data)
        if len(done) == 20:
            all_done.set()

    settings = ConsumerSettings(type=SubscriptionType.SHARED, concurrency=4)
    await transport.subscribe(topic, "executor", handler, settings)
    await asyncio.gather(*(transport.publish(topic, str(i).encode()) for i in range(20)))
    async with asyncio.timeout(WAIT):
        await all_done.wait()
    assert sorted(done) == sorted(str(i).encode() for i in range(20))
    assert 2 <= peak <= 4


async def test_key_shared_keeps_per_key_order_and_runs_keys_in_parallel(
    transport: Transport, topic: str
) -> None:
    keys, per_key = 20, 50
    seen: dict[str, list[int]] = defaultdict(list)
    in_flight: set[str] = set()
    overlaps: list[str] = []
    running = 0
    peak = 0
    total = 0
    all_done = asyncio.Event()

    async def handler(message: TransportMessage) -> None:
        nonlocal running, peak, total
        key = message.key
        assert key is not None
        if key in in_flight:
            overlaps.append(key)
        in_flight.add(key)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.002)
        seen[key].append(int(message.data))
        running -= 1
        in_flight.discard(key)
        total += 1
        if total >= keys * per_key:
            all_done.set()

    settings = ConsumerSettings(type=SubscriptionType.KEY_SHARED, concurrency=8)
    await transport.subscribe(topic, "engine", handler, settings)

    async def publish_key(k: int) -> None:
        for i in range(per_key):
            await transport.publish(topic, str(i).encode(), key=f"wf-{k}")

    await asyncio.gather(*(publish_key(k) for k in range(keys)))
    async with asyncio.timeout(WAIT):
        await all_done.wait()
    assert overlaps == []
    assert set(seen) == {f"wf-{k}" for k in range(keys)}
    for key, order in seen.items():
        assert order == list(range(per_key)), key
    assert 2 <= peak <= 8


async def test_failure_is_redelivered_with_incremented_count(
    transport: Transport, topic: str
) -> None:
    deliveries: list[tuple[int, float]] = []
    succeeded = asyncio.Event()

    async def handler(message: TransportMessage) -> None:
        deliveries.append((message.redelivery_count, time.time()))
        if len(deliveries) < 3:
            raise RuntimeError("transient")
        succeeded.set()

    settings = ConsumerSettings(max_redeliveries=5, redelivery_delay=0.3)
    await transport.subscribe(topic, "executor", handler, settings)
    await transport.publish(topic, b"flaky", key="k", properties={"p": "1"})
    async with asyncio.timeout(WAIT):
        await succeeded.wait()
    assert [count for count, _ in deliveries] == [0, 1, 2]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(deliveries)]
    assert all(gap >= 0.25 for gap in gaps), gaps
    await asyncio.sleep(0.5)
    assert len(deliveries) == 3  # acknowledged once handled: never delivered again


async def test_redelivered_message_keeps_identity(transport: Transport, topic: str) -> None:
    seen: list[TransportMessage] = []
    done = asyncio.Event()

    async def handler(message: TransportMessage) -> None:
        seen.append(message)
        if len(seen) == 1:
            raise RuntimeError("once")
        done.set()

    await transport.subscribe(topic, "executor", handler, ConsumerSettings(redelivery_delay=0.1))
    await transport.publish(topic, b"x", key="k", properties={"p": "v"})
    async with asyncio.timeout(WAIT):
        await done.wait()
    first, second = seen
    assert (second.topic, second.data, second.key) == (topic, b"x", "k")
    assert second.message_id == first.message_id
    assert dict(second.properties) == {"p": "v"}
    assert second.publish_time == pytest.approx(first.publish_time, abs=0.01)


async def test_dead_letter_after_max_redeliveries_and_topic_keeps_flowing(
    transport: Transport, topic: str
) -> None:
    attempts: list[int] = []
    handled: list[bytes] = []

    async def handler(message: TransportMessage) -> None:
        if message.data == b"poison":
            attempts.append(message.redelivery_count)
            raise ValueError("cannot decode poison")
        handled.append(message.data)

    dead = Recorder()
    told: list[tuple[TransportMessage, str]] = []

    async def tell(message: TransportMessage, reason: str) -> None:
        told.append((message, reason))

    settings = ConsumerSettings(max_redeliveries=2, redelivery_delay=0.1, on_dead_letter=tell)
    await transport.subscribe(topic, "engine", handler, settings)
    await transport.subscribe(dead_letter_topic(topic), "inspect", dead)
    await transport.publish(topic, b"poison", key="k1", properties={"origin": "test"})
    await transport.publish(topic, b"fine-1", key="k2")
    (letter,) = await dead.wait_for(1)
    await transport.publish(topic, b"fine-2", key="k1")
    await until(lambda: len(handled) >= 2)
    assert attempts == [0, 1, 2]
    assert letter.data == b"poison"
    assert letter.key == "k1"
    assert letter.topic == dead_letter_topic(topic)
    assert "ValueError" in letter.properties[DLQ_ERROR_PROPERTY]
    assert "cannot decode poison" in letter.properties[DLQ_ERROR_PROPERTY]
    assert letter.properties[DLQ_ORIGINAL_TOPIC_PROPERTY] == topic
    assert letter.properties[DLQ_DELIVERIES_PROPERTY] == "3"
    assert letter.properties["origin"] == "test"
    assert sorted(handled) == [b"fine-1", b"fine-2"]
    await asyncio.sleep(0.3)
    assert len(attempts) == 3
    assert len(dead.messages) == 1
    # the subscriber's hook learnt it once, with the message and the reason (to tell waiters)
    assert [(m.data, m.topic) for m, _ in told] == [(b"poison", topic)]
    assert "cannot decode poison" in told[0][1]


async def test_retry_later_comes_back_without_using_the_failure_budget(
    transport: Transport, topic: str
) -> None:
    seen: list[bytes] = []
    postponed = 0

    async def handler(message: TransportMessage) -> None:
        nonlocal postponed
        if message.data == b"early" and postponed < 5:
            postponed += 1
            raise RetryLater(0.05, "the state that expects it is not stored yet")
        seen.append(message.data)

    dead = Recorder()
    settings = ConsumerSettings(
        type=SubscriptionType.KEY_SHARED, max_redeliveries=1, redelivery_delay=0.05
    )
    await transport.subscribe(topic, "engine", handler, settings)
    await transport.subscribe(dead_letter_topic(topic), "inspect", dead)
    await transport.publish(topic, b"early", key="k")
    await transport.publish(topic, b"later", key="k")
    await until(lambda: len(seen) == 2)
    assert postponed == 5
    assert seen == [b"later", b"early"]  # the key was not blocked meanwhile
    await asyncio.sleep(0.2)
    assert dead.messages == []


async def test_key_shared_failure_does_not_block_other_keys(
    transport: Transport, topic: str
) -> None:
    handled: list[str] = []

    async def handler(message: TransportMessage) -> None:
        if message.key == "bad":
            raise RuntimeError("always")
        handled.append(message.data.decode())

    settings = ConsumerSettings(
        type=SubscriptionType.KEY_SHARED, concurrency=2, max_redeliveries=3, redelivery_delay=0.5
    )
    await transport.subscribe(topic, "engine", handler, settings)
    await transport.publish(topic, b"x", key="bad")
    for i in range(10):
        await transport.publish(topic, str(i).encode(), key="good")
    await until(lambda: len(handled) >= 10)
    assert handled == [str(i) for i in range(10)]


async def test_delayed_delivery_not_before_deliver_at(transport: Transport, topic: str) -> None:
    rec = Recorder()
    await transport.subscribe(topic, "delay", rec)
    due = transport.now() + 1.5
    await transport.publish(topic, b"later", deliver_at=due, properties={"timer": "t1"})
    await transport.publish(topic, b"now")
    await transport.publish(topic, b"past", deliver_at=transport.now() - 10)
    received = await rec.wait_for(3)
    by_data = dict(zip((m.data for m in received), rec.times, strict=True))
    assert by_data[b"later"] >= due
    assert by_data[b"now"] < due
    assert by_data[b"past"] < due
    assert received[-1].data == b"later"
    assert dict(received[-1].properties) == {"timer": "t1"}


async def test_many_pending_delayed_messages_do_not_block_ready_ones(
    transport: Transport, topic: str
) -> None:
    rec = Recorder()
    await transport.subscribe(topic, "delay", rec, ConsumerSettings(concurrency=4))
    far = transport.now() + 3600
    await asyncio.gather(
        *(transport.publish(topic, f"timer-{i}".encode(), deliver_at=far) for i in range(300))
    )
    await transport.publish(topic, b"ready")
    (message,) = await rec.wait_for(1, within=20)
    assert message.data == b"ready"
    await asyncio.sleep(0.5)
    assert [m.data for m in rec.messages] == [b"ready"]


async def test_close_waits_for_in_flight_handler(transport: Transport, topic: str) -> None:
    started = asyncio.Event()
    finished: list[bytes] = []

    async def handler(message: TransportMessage) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(message.data)

    consumer = await transport.subscribe(topic, "engine", handler)
    await transport.publish(topic, b"slow")
    async with asyncio.timeout(WAIT):
        await started.wait()
    await consumer.close()
    assert finished == [b"slow"]
    await consumer.close()  # idempotent


async def test_messages_not_handled_before_close_go_to_the_next_consumer(
    transport: Transport, topic: str
) -> None:
    first: list[bytes] = []
    started = asyncio.Event()

    async def slow(message: TransportMessage) -> None:
        started.set()
        await asyncio.sleep(0.3)
        first.append(message.data)

    consumer = await transport.subscribe(topic, "engine", slow)
    for i in range(10):
        await transport.publish(topic, str(i).encode())
    async with asyncio.timeout(WAIT):
        await started.wait()
    await consumer.close()
    rec = Recorder()
    await transport.subscribe(topic, "engine", rec)
    expected = {str(i).encode() for i in range(10)}
    await until(lambda: {m.data for m in rec.messages} | set(first) == expected)
    assert first  # the in-flight one was finished, not abandoned


async def test_each_subscription_gets_every_message(transport: Transport, topic: str) -> None:
    a, b = Recorder(), Recorder()
    await transport.subscribe(topic, "sub-a", a)
    await transport.subscribe(topic, "sub-b", b)
    for i in range(5):
        await transport.publish(topic, str(i).encode())
    assert sorted(m.data for m in await a.wait_for(5)) == [str(i).encode() for i in range(5)]
    assert sorted(m.data for m in await b.wait_for(5)) == [str(i).encode() for i in range(5)]


async def test_retry_goes_to_the_failing_subscription_only(
    transport: Transport, topic: str
) -> None:
    ok = Recorder()
    failures: list[int] = []
    retried = asyncio.Event()

    async def flaky(message: TransportMessage) -> None:
        failures.append(message.redelivery_count)
        if len(failures) == 1:
            raise RuntimeError("once")
        retried.set()

    await transport.subscribe(topic, "ok", ok)
    await transport.subscribe(topic, "flaky", flaky, ConsumerSettings(redelivery_delay=0.1))
    await transport.publish(topic, b"m")
    async with asyncio.timeout(WAIT):
        await retried.wait()
    await asyncio.sleep(0.3)
    assert [m.data for m in ok.messages] == [b"m"]
    assert failures == [0, 1]
