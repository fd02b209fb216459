"""The hand-off from the Pulsar client's threads to the event loop, and the paths that use it."""

from __future__ import annotations

import asyncio
import threading
import time
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


async def test_a_post_from_the_loops_own_thread_runs_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A C++ call of the loop's thread that calls back at once (a receive finding a message
    prefetched) settles its future before it returns; from another thread, it waits a drain."""
    bridge = LoopBridge()
    ran: list[str] = []
    bridge.post(ran.append, "here")
    assert ran == ["here"]
    bridge.post(_raise)  # logged, never raised into the C++ call
    assert "a Pulsar completion callback failed" in caplog.text
    other = threading.Thread(target=bridge.post, args=(ran.append, "there"))
    other.start()
    other.join()
    assert ran == ["here"]
    await asyncio.sleep(0.01)
    assert ran == ["here", "there"]
    assert bridge.wakeups == 1


def _raise() -> None:
    raise ValueError("boom")


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


@pytest.mark.pulsar
async def test_messages_one_at_a_time_and_in_bursts_all_arrive(
    lite_url: str, namespace: str
) -> None:
    """A consumer that found its queue empty waits with a receive (no look first); one that
    was called back at once looks without waiting again: single messages and bursts, in turn,
    all arrive once."""
    topic = f"task-executor:Idle{uuid.uuid4().hex[:8]}"
    received: list[bytes] = []
    async with PulsarTransport.for_pulsar_lite(lite_url, namespace=namespace) as transport:
        consumer = await transport.subscribe(topic, "s", _collect(received))
        assert isinstance(consumer, PulsarConsumer)
        sent: list[bytes] = []
        for round_ in range(6):
            if round_ % 2:
                burst = [b"%d-%d" % (round_, i) for i in range(200)]
                await asyncio.gather(*(transport.publish(topic, m) for m in burst))
                sent += burst
            else:
                for i in range(5):
                    message = b"%d-%d" % (round_, i)
                    await transport.publish(topic, message)
                    sent.append(message)
                    async with asyncio.timeout(30):
                        while message not in received:  # noqa: ASYNC110 - another task
                            await asyncio.sleep(0.005)
                assert consumer._sources[0].idle  # it waits rather than looking
        async with asyncio.timeout(30):
            while len(received) < len(sent):  # noqa: ASYNC110 - handlers run concurrently
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
    assert sorted(received) == sorted(sent)


@pytest.mark.pulsar
async def test_a_waited_for_message_is_queued_as_it_comes_unless_it_is_due_later(
    lite_url: str, namespace: str
) -> None:
    """A message that completes a waiting receive is queued for a handler in the completion
    itself (its handler starts a turn of the event loop sooner); one due later still goes
    through the receive loop, which delays it."""
    topic = f"task-executor:AtOnce{uuid.uuid4().hex[:8]}"
    received: list[tuple[bytes, float]] = []

    async def handle(message: TransportMessage) -> None:
        received.append((message.data, time.time()))

    async with PulsarTransport.for_pulsar_lite(lite_url, namespace=namespace) as transport:
        consumer = await transport.subscribe(topic, "s", handle)
        assert isinstance(consumer, PulsarConsumer)
        routed: list[bytes] = []
        route = consumer._route

        async def counting(envelope: Any) -> None:
            routed.append(envelope.data())
            await route(envelope)

        consumer._route = counting  # type: ignore[method-assign]
        for i in range(5):
            async with asyncio.timeout(30):  # the consumer waits for the next message
                while not (consumer._sources[0].idle and consumer._sources[0].pending):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            await transport.publish(topic, b"now-%d" % i)
            async with asyncio.timeout(30):
                while len(received) <= i:  # noqa: ASYNC110 - another task
                    await asyncio.sleep(0.005)
        assert [data for data, _ in received] == [b"now-%d" % i for i in range(5)]
        assert routed == []  # none went through the receive loop
        await asyncio.sleep(0.05)
        due = time.time() + 0.5
        await transport.publish(topic, b"later", deliver_at=due)
        async with asyncio.timeout(30):
            while len(received) < 6:  # noqa: ASYNC110 - another task
                await asyncio.sleep(0.01)
        assert routed == [b"later"]
        assert received[-1][0] == b"later"
        assert received[-1][1] >= due - 0.01


def _collect(into: list[bytes]) -> Callable[[TransportMessage], Any]:
    async def handle(message: TransportMessage) -> None:
        into.append(message.data)

    return handle
