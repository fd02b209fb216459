"""Burning consumer ids on pulsar-lite at start-up (so that processes do not collide on a
subscription) goes in chunks and survives a chunk that times out: a single subscription to up to
255 topics had outlasted the client's operation timeout on a loaded machine and failed the
transport's start."""

from __future__ import annotations

from typing import Any

import pulsar
import pulsar.asyncio as pa

from infinitic.transport_pulsar import PulsarTransport


class _Closable:
    def __init__(self, closed: list[int]) -> None:
        self._closed = closed

    async def close(self) -> None:
        self._closed.append(1)


class _FlakyClient:
    """Times out on its first subscription, then subscribes."""

    def __init__(self) -> None:
        self.subscribed: list[list[str]] = []
        self.closed: list[int] = []

    async def subscribe(self, topics: list[str], subscription: str, **_: Any) -> _Closable:
        self.subscribed.append(topics)
        if len(self.subscribed) == 1:
            raise pa.PulsarException(pulsar.Result.Timeout)
        return _Closable(self.closed)


async def test_the_burn_goes_in_chunks_and_past_a_timeout() -> None:
    transport = PulsarTransport.for_pulsar_lite("pulsar://127.0.0.1:1", namespace="burn")
    client = _FlakyClient()
    transport._consumer_client = client
    await transport._burn_consumer_ids(100)
    assert [len(t) for t in client.subscribed] == [32, 32, 32, 4]
    burnt = [t for chunk in client.subscribed for t in chunk]
    assert burnt == [
        f"non-persistent://infinitic/burn/__infinitic-consumer-ids-{i}" for i in range(100)
    ]
    assert len(client.closed) == 3  # every consumer made is closed
