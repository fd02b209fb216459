"""Inside a workflow, awaiting a failed task's Deferred again after ``retry_tasks`` gives its new
outcome (issue 12, item 1) on pulsar-lite + Redis, cache on and off. Public API only."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import TaskFailedError
from infinitic.workflow_engine import state_key
from infinitic.workflows import Channel, Workflow, dispatch, new_service

from .conftest import Stack


class Mended(Protocol):
    async def compute(self, n: int) -> int: ...

    async def note(self, seen: str) -> None: ...


class MendedImpl:
    """``compute`` fails until ``fixed``, then waits for ``release``; ``note`` tells the test
    what the workflow code saw."""

    def __init__(self) -> None:
        self.fixed = False
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.notes: asyncio.Queue[str] = asyncio.Queue()

    async def note(self, seen: str) -> None:
        await self.notes.put(seen)

    async def compute(self, n: int) -> int:
        self.calls += 1
        if not self.fixed:
            raise RuntimeError(f"broken attempt {self.calls}")
        self.started.set()
        await self.release.wait()
        return n * 10


class RetriedAwait(Workflow):
    go = Channel[str]()
    mended = new_service(Mended)

    async def run(self) -> list[str]:
        d = dispatch(self.mended.compute, 5)
        seen: list[str] = []
        try:
            await d
        except TaskFailedError:
            seen.append(d.status)
        await self.mended.note(d.status)
        seen.append(await self.go.receive(limit=1))  # sent once the task was retried
        await self.mended.note(d.status)
        seen.append(str(await d))
        return seen


@pytest.mark.parametrize(
    "stack",
    [pytest.param("pulsar-lite+redis", marks=[pytest.mark.pulsar, pytest.mark.redis])],
    indirect=True,
)
async def test_an_await_after_a_retry_by_tag_gets_the_new_result(
    stack: Stack, workflow_cache_size: int
) -> None:
    mended = MendedImpl()
    worker = stack.worker(
        workflow_cache_size=workflow_cache_size, inline_workflow_tasks=not workflow_cache_size
    )
    worker.add_service(mended, interface=Mended, concurrency=4)
    worker.add_workflow(RetriedAwait, concurrency=4)
    try:
        async with worker, InfiniticClient(transport=stack.transport) as client:
            tag = f"mended-{workflow_cache_size}"
            main = await client.dispatch(client.new_workflow(RetriedAwait, tags={tag}).run)
            running = client.get_workflow_by_id(RetriedAwait, main.id)
            assert await asyncio.wait_for(mended.notes.get(), 20) == "failed"  # code saw it
            mended.fixed = True
            await client.retry_tasks(client.get_workflow_by_tag(RetriedAwait, tag))
            await asyncio.wait_for(mended.started.wait(), 20)
            await running.go.send("signal")
            # the signal's step comes after the retry's: the Deferred waits again
            assert await asyncio.wait_for(mended.notes.get(), 20) == "ongoing"
            mended.release.set()
            assert await asyncio.wait_for(main, 20) == ["failed", "signal", "50"]
            assert mended.calls == 2
            key = state_key("RetriedAwait", main.id)
            for _ in range(400):
                if await stack.storage.key_value.get(key) is None:
                    break
                await asyncio.sleep(0.05)
            assert await stack.storage.key_value.get(key) is None
    finally:
        mended.release.set()
