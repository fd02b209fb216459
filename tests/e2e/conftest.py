"""Fixtures for end-to-end scenarios on the in-memory transport and storage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from infinitic.client import InfiniticClient
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker

WorkerFactory = Callable[..., InfiniticWorker]


@pytest.fixture
def transport() -> InMemoryTransport:
    return InMemoryTransport()


@pytest.fixture
def storage() -> InMemoryStorage:
    return InMemoryStorage()


@pytest.fixture
def make_worker(
    transport: InMemoryTransport, storage: InMemoryStorage, workflow_cache_size: int
) -> WorkerFactory:
    def make(**kwargs: object) -> InfiniticWorker:
        options: dict[str, object] = {
            "transport": transport,
            "storage": storage,
            "workflow_cache_size": workflow_cache_size,
            "redelivery_delay": 0.01,
            # With the cache, workflow tasks go through the broker to the executor; without
            # it, the state engine runs them itself, and every step also archives the step
            # before it: each scenario then replays from a history read back from its chunks.
            "inline_workflow_tasks": not workflow_cache_size,
            "history_chunk_steps": 64 if workflow_cache_size else 1,
            # With the cache, service executors also hand their results to the state engine at
            # once (as on a broker; on this transport it is off by default), so every scenario
            # runs with and without local copies of results.
            "local_results": bool(workflow_cache_size),
        }
        options.update(kwargs)
        return InfiniticWorker(**options)  # type: ignore[arg-type]

    return make


@asynccontextmanager
async def running(worker: InfiniticWorker) -> AsyncIterator[InfiniticClient]:
    """Start ``worker`` and a client on its transport; close both after."""
    async with worker, InfiniticClient(transport=worker.transport) as client:
        yield client
