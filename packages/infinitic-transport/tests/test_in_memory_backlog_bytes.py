"""The backlog of an in-memory topic nobody subscribed to is bounded in bytes, not only in
messages: 100,000 messages of 5 MB would be 500 GB."""

from __future__ import annotations

import asyncio

import pytest

from infinitic.transport import ConsumerSettings, InMemoryTransport
from infinitic.transport import TransportMessage as Message


async def _first_delivered(transport: InMemoryTransport, topic: str, count: int) -> list[bytes]:
    seen: list[bytes] = []
    all_in = asyncio.Event()

    async def handler(message: Message) -> None:
        seen.append(message.data)
        if len(seen) == count:
            all_in.set()

    await transport.subscribe(topic, "s", handler, ConsumerSettings())
    async with asyncio.timeout(5):
        await all_in.wait()
    return seen


async def test_a_topic_without_subscriber_keeps_its_last_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with InMemoryTransport(max_backlog_bytes=10_000) as transport:
        for i in range(10):  # 3,000 bytes each: the last three fit in 10,000
            await transport.publish("events", bytes([i]) * 3_000, properties={"k": "v"})
        await transport.publish("other", b"kept")
        assert transport.pending("events", "s") == 3
        assert transport.pending("other", "s") == 1
        warnings = [r.getMessage() for r in caplog.records if "has no subscriber" in r.getMessage()]
        assert warnings == [
            "events has no subscriber: only its last 10,000 bytes of messages are kept (3 "
            "messages now; the oldest are dropped; max_backlog_bytes of InMemoryTransport)"
        ]
        seen = await _first_delivered(transport, "events", 3)
        assert [m[0] for m in seen] == [7, 8, 9]


async def test_a_message_larger_than_the_budget_is_kept_alone() -> None:
    async with InMemoryTransport(max_backlog_bytes=100) as transport:
        await transport.publish("events", b"a" * 50)
        await transport.publish("events", b"b" * 500)
        assert transport.pending("events", "s") == 1
        assert await _first_delivered(transport, "events", 1) == [b"b" * 500]


def test_the_byte_budget_is_positive() -> None:
    with pytest.raises(ValueError, match="max_backlog_bytes must be at least 1"):
        InMemoryTransport(max_backlog_bytes=0)
