"""The embedded broker keeps dispatching after bursts on a connection shared by many consumers.

pulsar-lite 0.2.0 skips the consumers of a connection whose outbound buffer is above its
high-water mark and does not dispatch again when the buffer drains: with its default mark
(64 KiB), a burst of 20 KB messages to 100 subscriptions consumed through one client left a
few subscriptions idle, holding permits, with their last messages in the broker until the next
publish on their topic (in about half of the bursts before the embedded broker raised the mark).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pulsar
import pytest

pytestmark = pytest.mark.pulsar

TOPICS = 100
PER_TOPIC = 20
SIZE = 20_000
ROUNDS = 6
IDLE = 3.0


def _burst(url: str, namespace: str, round_: int) -> list[int]:
    """Publish a burst to TOPICS topics consumed through one client; the counts received."""
    producers_client = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    consumers_client = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    names = [
        f"persistent://public/{namespace}/burst-{round_}-{uuid.uuid4().hex[:6]}-{i}"
        for i in range(TOPICS)
    ]
    counts = [0] * TOPICS
    lock = threading.Lock()
    stopping = threading.Event()
    try:
        consumers = [
            consumers_client.subscribe(
                name,
                "s",
                consumer_type=pulsar.ConsumerType.Shared,
                receiver_queue_size=100,
                initial_position=pulsar.InitialPosition.Earliest,
            )
            for name in names
        ]

        def on_message(i: int) -> Any:
            def received(result: pulsar.Result, message: Any) -> None:
                if result != pulsar.Result.Ok:
                    return
                consumers[i].acknowledge(message)
                with lock:
                    counts[i] += 1
                if not stopping.is_set():
                    consumers[i]._consumer.receive_async(received)

            return received

        for i, consumer in enumerate(consumers):
            consumer._consumer.receive_async(on_message(i))
        producers = [
            producers_client.create_producer(name, batching_enabled=False, block_if_queue_full=True)
            for name in names
        ]
        payload = b"z" * SIZE
        for _ in range(PER_TOPIC):
            for producer in producers:
                producer.send_async(payload, None)
        for producer in producers:
            producer.flush()
        # A stuck subscription never gets its messages (no more publishes come): stop once
        # nothing arrived for IDLE seconds.
        seen, last = -1, time.monotonic()
        while sum(counts) < TOPICS * PER_TOPIC and time.monotonic() - last < IDLE:
            if sum(counts) != seen:
                seen, last = sum(counts), time.monotonic()
            time.sleep(0.05)
        return list(counts)
    finally:
        stopping.set()
        consumers_client.close()
        producers_client.close()


async def test_bursts_on_a_shared_connection_never_leave_a_subscription_idle(
    lite_url: str, namespace: str
) -> None:
    for round_ in range(ROUNDS):
        counts = await asyncio.to_thread(_burst, lite_url, namespace, round_)
        short = {i: n for i, n in enumerate(counts) if n < PER_TOPIC}
        assert not short, f"burst {round_}: subscriptions left with messages in the broker: {short}"
