"""Fixtures of the end-to-end scenarios on real backends.

``stack`` is a transport and a storage: each database (Redis with zstd compression,
PostgreSQL, MySQL) on the in-memory transport, and the Pulsar transport on a pulsar-lite broker
(started once per session, or ``PULSAR_LITE_URL``) with in-memory and with Redis storage.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from infinitic.storage import InMemoryStorage, Storage
from infinitic.transport import InMemoryTransport, Transport
from infinitic.worker import InfiniticWorker

from .support import Backend, open_backend


def pulsar_lite_transport(url: str, **settings: Any) -> Transport:
    """A Pulsar transport on pulsar-lite, in a namespace of its own (no shared topics)."""
    from infinitic.transport_pulsar import PulsarTransport

    return PulsarTransport.for_pulsar_lite(
        url, namespace=f"e2e-{uuid.uuid4().hex[:10]}", **settings
    )


@dataclass
class Stack:
    """A transport and a storage for one test, and the worker options that go with them."""

    name: str
    transport: Transport
    storage: Storage
    backend: Backend | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def worker(self, **kwargs: Any) -> InfiniticWorker:
        return InfiniticWorker(
            transport=self.transport, storage=self.storage, **{**self.options, **kwargs}
        )


STACKS = [
    pytest.param("redis-zstd", marks=pytest.mark.redis),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
    pytest.param("pulsar-lite+memory", marks=pytest.mark.pulsar),
    pytest.param("pulsar-lite+redis", marks=[pytest.mark.pulsar, pytest.mark.redis]),
]


async def open_stack(name: str, request: pytest.FixtureRequest) -> Stack:
    transport_name, _, storage_name = name.partition("+")
    backend: Backend | None = None
    transport: Transport
    if transport_name == "pulsar-lite":
        transport = pulsar_lite_transport(request.getfixturevalue("pulsar_lite_url"))
        # small chunks: the archived history is read and written on every real backend
        options: dict[str, Any] = {"redelivery_delay": 0.2, "history_chunk_steps": 2}
        if storage_name == "redis":
            backend = await open_backend("redis")
    else:
        transport = InMemoryTransport()
        options = {"redelivery_delay": 0.05, "history_chunk_steps": 2}
        database, _, compression = transport_name.partition("-")
        backend = await open_backend(database, compression or None)  # type: ignore[arg-type]
    storage = backend.storage if backend is not None else InMemoryStorage()
    await transport.start()
    return Stack(name, transport, storage, backend, options)


@pytest.fixture(params=STACKS)
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """Each real backend in turn (see the module documentation)."""
    s = await open_stack(str(request.param), request)
    try:
        yield s
    finally:
        await s.transport.close()
        if s.backend is not None:
            await s.backend.close()
        else:
            await s.storage.close()
