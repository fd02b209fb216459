"""Delayed messages held in memory are bounded in bytes, not only in count: 100 held messages
of 5 MB would be 500 MB per subscription (``maxHeldBytes``), on an embedded pulsar-lite."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

import pytest

from infinitic.transport import ConsumerSettings, TransportMessage
from infinitic.transport_pulsar import PulsarTransport
from infinitic.transport_pulsar._consumer import PulsarConsumer
from infinitic.transport_pulsar._held import HeldBudget

pytestmark = pytest.mark.pulsar
MESSAGE_BYTES = 100_000
MAX_HELD_BYTES = 250_000  # two messages


async def test_held_messages_stay_within_the_byte_budget(
    make_transport: Callable[..., PulsarTransport], caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"task-executor:Held{uuid.uuid4().hex[:10]}"
    tuning = {"delayHoldSeconds": 5.0, "maxHeldMessages": 100, "maxHeldBytes": MAX_HELD_BYTES}
    caplog.set_level(logging.WARNING, "infinitic.transport_pulsar")
    async with make_transport(consumer=tuning) as t:
        received: list[tuple[bytes, float]] = []
        all_in = asyncio.Event()

        async def handler(message: TransportMessage) -> None:
            received.append((message.data, time.time()))
            if len(received) == 8:
                all_in.set()

        consumer = await t.subscribe(topic, "timers", handler, ConsumerSettings(concurrency=4))
        assert isinstance(consumer, PulsarConsumer)
        due = t.now() + 1.5
        payloads = [bytes([i]) * MESSAGE_BYTES for i in range(8)]
        await asyncio.gather(*(t.publish(topic, p, deliver_at=due) for p in payloads))
        peak_bytes = peak_count = 0
        async with asyncio.timeout(30):
            while not all_in.is_set():
                peak_bytes = max(peak_bytes, consumer.held_bytes)
                peak_count = max(peak_count, consumer.held_count)
                await asyncio.sleep(0.005)
    assert sorted(d for d, _ in received) == sorted(payloads)
    assert min(at for _, at in received) >= due
    assert 0 < peak_bytes <= MAX_HELD_BYTES
    assert peak_count <= 2  # the count (100) would have held all 8
    warnings = [r.getMessage() for r in caplog.records if "maxHeldBytes" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"does not fit in maxHeldBytes {MAX_HELD_BYTES:,}" in warnings[0]


async def test_a_message_larger_than_the_budget_is_held_alone() -> None:
    budget = HeldBudget("t", max_messages=10, max_bytes=100)
    await budget.acquire(500)  # nothing held: it fits, alone
    assert not budget.fits(1)
    waiting = asyncio.ensure_future(budget.acquire(50))
    await asyncio.sleep(0)
    assert not waiting.done()
    budget.release(500)
    await asyncio.wait_for(waiting, 1)
    assert (budget.count, budget.bytes) == (1, 50)
