"""Far-future messages on a broker without delayed delivery: park topics, on pulsar-lite.

Counts, not times: a parked message is republished a number of times that grows with the
logarithm of its delay, near messages are never stuck behind far ones, and closing, handing
over or killing a consumer loses nothing. Elapsed times are only checked against generous
bounds (the machine may be busy).
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from infinitic.transport import ConsumerSettings, RetryLater, TransportMessage
from infinitic.transport_pulsar import (
    EmbeddedPulsarLite,
    PulsarConsumerSettings,
    PulsarSettings,
    PulsarTransport,
)
from infinitic.transport_pulsar._consumer import PulsarConsumer
from infinitic.transport_pulsar._envelope import DELIVER_AT, ORIGIN_ID, PARKED_AT
from infinitic.transport_pulsar._parking import PARK_LEVELS, ParkingLadder

WAIT = 60.0
# A message is handled no earlier than due, and within this bound after it here (a handover
# or a restart included): loose on purpose, for busy machines.
LATE = 15.0


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110 - conditions span several handlers
            await asyncio.sleep(0.02)


class CountingTransport(PulsarTransport):
    """Counts republishes to park and retry topics, per original message."""

    def __init__(self, settings: PulsarSettings) -> None:
        super().__init__(settings)
        self.parks: Counter[str] = Counter()
        self.parked_data: set[bytes] = set()
        self.retries = 0

    async def _republish(self, topic: str, data: bytes, **kwargs: Any) -> None:
        await super()._republish(topic, data, **kwargs)
        if "-park-" in topic:
            self.parks[kwargs["properties"][ORIGIN_ID]] += 1
            self.parked_data.add(data)
        elif topic.endswith("-retry"):
            self.retries += 1


class Recorder:
    """A handler recording when each message arrived."""

    def __init__(self) -> None:
        self.at: dict[bytes, list[float]] = {}

    async def __call__(self, message: TransportMessage) -> None:
        self.at.setdefault(message.data, []).append(time.time())

    def count(self) -> int:
        return len(self.at)


@pytest.fixture
def make(lite_url: str, namespace: str) -> Callable[..., CountingTransport]:
    def build(flavor: str = "pulsar-lite", **consumer: Any) -> CountingTransport:
        return CountingTransport(
            PulsarSettings(
                broker_service_url=lite_url,
                broker_flavor=flavor,  # type: ignore[arg-type]
                namespace=namespace,
                consumer=PulsarConsumerSettings(**consumer),
            )
        )

    return build


@pytest.fixture
def topic() -> str:
    return f"workflow-delay:Unit{uuid.uuid4().hex[:10]}"


def check_on_time(recorder: Recorder, dues: dict[bytes, float]) -> None:
    assert set(recorder.at) == set(dues)
    for data, due in dues.items():
        first = min(recorder.at[data])
        assert first >= due, f"{data!r} handled {due - first:.3f} s early"
        assert first < due + LATE, f"{data!r} handled {first - due:.1f} s late"


# -- the schedule -------------------------------------------------------------------------


def test_a_far_message_is_looked_at_a_logarithmic_number_of_times() -> None:
    ladder = ParkingLadder.of(park_recheck_seconds=10, delay_hold_seconds=5)
    assert len(ladder.looks(3_600_000)) == 13  # one look every 10 s: 360
    top = ladder.wait_ms(PARK_LEVELS - 1)
    for seconds in (26, 60, 600, 3600, 2 * top // 1000):
        looks = ladder.looks(seconds * 1000)
        assert 1 <= len(looks) <= 2 * math.log2(seconds / 10) + 2, (seconds, looks)
    # Beyond twice the longest wait: once per longest wait, on the top level.
    day = ladder.looks(86_400_000)
    assert day[: len(day) - 13] == [PARK_LEVELS - 1] * (len(day) - 13)
    assert len(day) <= 86_400_000 // top + 13


def test_each_look_leaves_a_wait_to_spare_and_near_messages_are_held() -> None:
    ladder = ParkingLadder.of(park_recheck_seconds=0.1, delay_hold_seconds=0.2)
    assert ladder.level_for(ladder.near_ms - 1) is None
    assert ladder.level_for(ladder.near_ms) == 0
    for remaining in range(0, 400_000, 997):
        for level in ladder.looks(remaining):
            wait = ladder.wait_ms(level)
            # Looked at one wait after parking, with one more wait before it must be held:
            # a handover to another consumer (behind its prefetched messages) is on time.
            assert 2 * wait <= remaining - ladder.hold_ms
            remaining -= wait
        assert remaining < ladder.near_ms


# -- on pulsar-lite -------------------------------------------------------------------------

pulsar = pytest.mark.pulsar


@pulsar
async def test_a_far_message_is_republished_a_bounded_number_of_times(
    make: Callable[..., CountingTransport], topic: str
) -> None:
    # Due in 5 s with the shortest park at 0.1 s: 50 looks if every look republished it.
    async with make(delay_hold_seconds=0.2, park_recheck_seconds=0.1) as t:
        recorder = Recorder()
        await t.subscribe(topic, "timers", recorder, ConsumerSettings(concurrency=4))
        due = t.now() + 5.0
        await asyncio.gather(*(t.publish(topic, b"%d" % i, deliver_at=due) for i in range(20)))
        await until(lambda: recorder.count() == 20)
        check_on_time(recorder, {b"%d" % i: due for i in range(20)})
        assert len(t.parks) == 20
        bound = 2 * math.log2(5.0 / 0.1) + 2
        assert max(t.parks.values()) <= bound, t.parks
        assert t.retries == 0
        assert all(len(times) == 1 for times in recorder.at.values())


@pulsar
async def test_a_near_timer_is_not_delayed_by_many_far_ones(
    make: Callable[..., CountingTransport], topic: str
) -> None:
    # Held places are few and the shortest park is long: a far timer must take neither.
    async with make(delay_hold_seconds=0.5, park_recheck_seconds=30, max_held_messages=3) as t:
        recorder = Recorder()
        consumer = await t.subscribe(topic, "timers", recorder, ConsumerSettings(concurrency=2))
        assert isinstance(consumer, PulsarConsumer)
        far = t.now() + 3600
        await asyncio.gather(*(t.publish(topic, b"far", deliver_at=far) for _ in range(300)))
        due = t.now() + 3.0
        await t.publish(topic, b"near", deliver_at=due)
        await until(lambda: recorder.count() == 1)
        check_on_time(recorder, {b"near": due})
        await until(lambda: len(t.parks) == 300)
        await asyncio.sleep(1.0)
        assert len(t.parks) == 300
        assert set(t.parks.values()) == {1}  # each far timer republished once, then left
        assert consumer.held_count == 0


@pulsar
async def test_a_message_postponed_for_a_moment_is_held_and_handed_again_by_its_consumer(
    make: Callable[..., CountingTransport], topic: str
) -> None:
    # An outcome that comes a millisecond before the state expecting it is postponed for a
    # few: through the retry topic, two broker messages took longer than the wait asked for.
    async with make(delay_hold_seconds=0.5, park_recheck_seconds=0.1) as t:
        postponed: Counter[bytes] = Counter()
        recorder = Recorder()

        async def early(message: TransportMessage) -> None:
            delay = 0.01 if message.data == b"soon" else 1.0  # past delay_hold_seconds
            if postponed[message.data] < 3:
                postponed[message.data] += 1
                raise RetryLater(delay, "the state that expects it is not stored yet")
            await recorder(message)

        consumer = await t.subscribe(topic, "engine", early, ConsumerSettings(concurrency=2))
        assert isinstance(consumer, PulsarConsumer)
        started = t.now()
        await t.publish(topic, b"soon", key="k")
        await until(lambda: recorder.count() == 1)
        assert recorder.at[b"soon"][0] - started >= 0.03  # three waits of 10 ms
        assert t.retries == 0  # held here, unacknowledged
        assert not t.parks
        assert consumer.held_count == 0
        await t.publish(topic, b"late", key="k")
        await until(lambda: recorder.count() == 2)
        assert recorder.at[b"late"][0] - started >= 3.0
        assert t.retries == 3  # a longer wait goes through the retry topic, as before
        assert postponed == {b"soon": 3, b"late": 3}


@pulsar
async def test_a_message_held_for_a_moment_comes_back_to_another_consumer_if_its_own_closes(
    make: Callable[..., CountingTransport], topic: str
) -> None:
    async with make(delay_hold_seconds=5.0) as t:
        first_seen = asyncio.Event()

        async def forever_early(message: TransportMessage) -> None:
            first_seen.set()
            raise RetryLater(2.0, "not now")

        first = await t.subscribe(topic, "engine", forever_early, ConsumerSettings())
        assert isinstance(first, PulsarConsumer)
        await t.publish(topic, b"m", key="k")
        await asyncio.wait_for(first_seen.wait(), WAIT)
        await until(lambda: first.held_count == 1)
        await first.close()  # held unacknowledged: the broker delivers it again
        assert first.held_count == 0
        recorder = Recorder()
        await t.subscribe(topic, "engine", recorder, ConsumerSettings())
        await until(lambda: recorder.count() == 1)
        assert t.retries == 0


@pulsar
async def test_nothing_is_lost_across_a_consumer_restart(
    make: Callable[..., CountingTransport], topic: str
) -> None:
    tuning = {"delay_hold_seconds": 0.2, "park_recheck_seconds": 0.1}
    recorder = Recorder()
    settings = ConsumerSettings(concurrency=4)
    async with make(**tuning) as first:
        await first.subscribe(topic, "timers", recorder, settings)
        now = first.now()
        dues = {b"%d" % i: now + 1.5 + i * 0.05 for i in range(40)}
        await asyncio.gather(*(first.publish(topic, d, deliver_at=t) for d, t in dues.items()))
        await until(lambda: len(first.parked_data | set(recorder.at)) == 40)
    # Closed while messages wait on park topics, are held or are about to be looked at.
    async with make(**tuning) as second:
        await second.subscribe(topic, "timers", recorder, settings)
        await until(lambda: recorder.count() == 40)
    check_on_time(recorder, dues)


@pulsar
async def test_parked_messages_are_on_time_when_a_consumer_hands_over(
    make: Callable[..., CountingTransport], topic: str
) -> None:
    # Two consumers on one subscription; one closes: the broker gives its unacknowledged park
    # messages to the other, behind the ones that one already prefetched.
    tuning = {"delay_hold_seconds": 0.2, "park_recheck_seconds": 0.1}
    recorder = Recorder()
    settings = ConsumerSettings(concurrency=4)
    async with make(consumer_id_offset=0, **tuning) as stays:
        await stays.subscribe(topic, "timers", recorder, settings)
        async with make(consumer_id_offset=100, **tuning) as leaves:
            await leaves.subscribe(topic, "timers", recorder, settings)
            now = stays.now()
            dues = {b"%d" % i: now + 1.5 + (i % 20) * 0.1 for i in range(60)}
            await asyncio.gather(*(stays.publish(topic, d, deliver_at=t) for d, t in dues.items()))
            await until(
                lambda: len(stays.parked_data | leaves.parked_data | set(recorder.at)) == 60
            )
        await until(lambda: recorder.count() == 60)
    check_on_time(recorder, dues)


@pulsar
async def test_messages_parked_on_the_retry_topic_by_an_earlier_version_move_to_park_topics(
    make: Callable[..., CountingTransport], topic: str
) -> None:
    # Earlier versions parked far messages on the retry topic and rechecked them there.
    async with make(delay_hold_seconds=0.2, park_recheck_seconds=0.1) as t:
        now = t.now()
        due = now + 2.0
        properties = {DELIVER_AT: str(int(due * 1000) + 1), PARKED_AT: str(int(now * 1000))}
        await t._send(f"{topic}-timers-retry", b"old", key=None, properties=properties)
        recorder = Recorder()
        await t.subscribe(topic, "timers", recorder)
        await until(lambda: recorder.count() == 1)
        check_on_time(recorder, {b"old": due})
        assert t.parked_data == {b"old"}


@pulsar
async def test_real_pulsar_keeps_native_delays(
    make: Callable[..., CountingTransport], topic: str
) -> None:
    # brokerFlavor pulsar: deliver_at is the broker's job; no park topics (pulsar-lite
    # delivers the retry copy at once, which the old recheck then holds).
    async with make(flavor="pulsar", delay_hold_seconds=0.2) as t:
        recorder = Recorder()
        consumer = await t.subscribe(topic, "timers", recorder)
        assert isinstance(consumer, PulsarConsumer)
        assert [s.topic for s in consumer._sources] == [topic, f"{topic}-timers-retry"]
        await t.publish(topic, b"far", deliver_at=t.now() + 3600)
        await until(lambda: t.retries >= 1)
        assert not t.parks
        assert recorder.count() == 0


_PARKING_WORKER = """
import asyncio, sys
from infinitic.transport_pulsar import PulsarSettings, PulsarTransport

class Counting(PulsarTransport):
    parks = 0
    async def _republish(self, topic, data, **kwargs):
        await super()._republish(topic, data, **kwargs)
        if "-park-" in topic:
            self.parks += 1
            print("parked", self.parks, flush=True)

async def main():
    settings = PulsarSettings.model_validate({
        "brokerServiceUrl": sys.argv[1], "brokerFlavor": "pulsar-lite", "namespace": sys.argv[2],
        "consumer": {"delayHoldSeconds": 0.2, "parkRecheckSeconds": 0.2, "consumerIdOffset": 0},
    })
    t = Counting(settings)
    async def never(message):
        print("handled early", flush=True)
    await t.subscribe(sys.argv[3], "timers", never)
    print("subscribed", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pulsar
async def test_a_worker_killed_while_timers_are_parked_loses_none(
    tmp_path: Any, namespace: str, topic: str
) -> None:
    async with EmbeddedPulsarLite(data_dir=tmp_path) as broker:
        url = broker.service_url
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _PARKING_WORKER,
            url,
            namespace,
            topic,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), WAIT)
            assert line.strip() == b"subscribed"
            async with PulsarTransport.for_pulsar_lite(url, namespace=namespace) as publisher:
                now = publisher.now()
                dues = {b"%d" % i: now + 3.0 + i * 0.05 for i in range(20)}
                for data, due in dues.items():
                    await publisher.publish(topic, data, deliver_at=due)
            async with asyncio.timeout(WAIT):
                while (await child.stdout.readline()).strip() != b"parked 20":
                    pass
        finally:
            os.kill(child.pid, signal.SIGKILL)
            await child.wait()
        recorder = Recorder()
        tuning = {"delayHoldSeconds": 0.2, "parkRecheckSeconds": 0.2, "consumerIdOffset": 50}
        async with PulsarTransport.for_pulsar_lite(url, namespace=namespace, consumer=tuning) as t:
            await t.subscribe(topic, "timers", recorder)
            await until(lambda: recorder.count() == 20)
        check_on_time(recorder, dues)
