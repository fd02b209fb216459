"""The hand-off from the Pulsar client's threads to the event loop, and the paths that use it."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from infinitic.transport import ConsumerSettings, TransportMessage
from infinitic.transport_pulsar import PulsarTransport
from infinitic.transport_pulsar._bridge import LoopBridge, settle
from infinitic.transport_pulsar._consumer import PulsarConsumer


async def test_posts_from_many_threads_all_run_in_order_per_thread() -> None:
    bridge = LoopBridge()
    seen: dict[int, list[int]] = {t: [] for t in range(4)}
    done = asyncio.Event()
    total = 4 * 5000

    def record(thread: int, i: int) -> None:
        seen[thread].append(i)
        if sum(len(v) for v in seen.values()) == total:
            done.set()

    def post_many(thread: int) -> None:
        for i in range(5000):
            bridge.post(record, thread, i)

    threads = [threading.Thread(target=post_many, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    async with asyncio.timeout(30):
        await done.wait()
    for t in threads:
        t.join()
    assert all(v == list(range(5000)) for v in seen.values())
    # Posts that arrive while a drain is pending share its wake-up.
    assert bridge.wakeups < total


async def test_a_failing_callback_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bridge = LoopBridge()
    ran: list[str] = []

    def fail() -> None:
        raise ValueError("boom")

    bridge.post(fail)
    bridge.post(ran.append, "after")
    await asyncio.sleep(0.01)
    assert ran == ["after"]
    assert "a Pulsar completion callback failed" in caplog.text


def test_posting_to_a_closed_loop_never_raises() -> None:
    loop = asyncio.new_event_loop()
    bridge = LoopBridge(loop)
    loop.close()
    bridge.post(print, "never")  # a C++ callback that raised would abort the process


async def test_settle_ignores_cancelled_futures() -> None:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.cancel()
    settle(future, None, 1)
    settle(future, RuntimeError("late"))
    assert future.cancelled()


@pytest.mark.pulsar
async def test_the_fast_paths_are_used_on_this_client_version(
    lite_url: str, namespace: str
) -> None:
    """Receives, acknowledgements and sends go to the C++ client directly (not through
    pulsar.asyncio): a pulsar-client upgrade that hid it would fall back silently, slower."""
    topic = f"task-executor:Bridge{uuid.uuid4().hex[:8]}"
    received: list[bytes] = []
    async with PulsarTransport.for_pulsar_lite(lite_url, namespace=namespace) as transport:
        consumer = await transport.subscribe(
            topic, "s", _collect(received), ConsumerSettings(concurrency=4)
        )
        assert isinstance(consumer, PulsarConsumer)
        assert all(source.native is not None for source in consumer._sources)
        await asyncio.gather(*(transport.publish(topic, b"%d" % i) for i in range(300)))
        assert transport._producers is not None
        assert all(n is not None for n in transport._producers._natives.values())
        async with asyncio.timeout(30):
            while len(received) < 300:  # noqa: ASYNC110 - handlers run concurrently
                await asyncio.sleep(0.02)
        assert sorted(received) == sorted(b"%d" % i for i in range(300))
        assert transport._bridge is not None
        assert transport._bridge.wakeups < 600
    # Acknowledged for good: the subscription has nothing left to deliver.
    again: list[bytes] = []
    async with PulsarTransport.for_pulsar_lite(lite_url, namespace=namespace) as transport:
        await transport.subscribe(topic, "s", _collect(again))
        await transport.publish(topic, b"last")
        async with asyncio.timeout(30):
            while b"last" not in again:  # noqa: ASYNC110 - handlers run concurrently
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
    assert again == [b"last"]


def _collect(into: list[bytes]) -> Callable[[TransportMessage], Any]:
    async def handle(message: TransportMessage) -> None:
        into.append(message.data)

    return handle
