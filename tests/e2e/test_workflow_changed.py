"""A workflow whose code changes between two workflow tasks fails with a clear error."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import WorkflowChangedError, WorkflowFailedError, WorkflowTaskFailedError
from infinitic.transport import InMemoryTransport
from infinitic.workflows import Workflow, new_service

from .conftest import WorkerFactory

CODE_VERSION = {"v": 1}


class Fast(Protocol):
    async def one(self) -> int: ...

    async def other(self) -> int: ...


class Slow(Protocol):
    async def two(self) -> int: ...


class FastImpl:
    async def one(self) -> int:
        return 1

    async def other(self) -> int:
        return 10


class SlowImpl:
    async def two(self) -> int:
        return 2


class ChangingWorkflow(Workflow):
    fast = new_service(Fast)
    slow = new_service(Slow)

    async def run(self) -> int:
        x = await self.fast.one()
        if CODE_VERSION["v"] == 1:
            y = await self.slow.two()
        else:  # the redeployed code calls something else at the same position
            y = await self.fast.other()
        return x + y


async def _wait_for_backlog(transport: InMemoryTransport, topic: str) -> None:
    for _ in range(500):
        if transport.pending(topic, "infinitic") > 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"nothing reached {topic}")


@pytest.mark.parametrize("changed", [False, True], ids=["same-code", "changed-code"])
async def test_code_changed_between_two_workflow_tasks(
    make_worker: WorkerFactory, transport: InMemoryTransport, changed: bool
) -> None:
    CODE_VERSION["v"] = 1
    async with InfiniticClient(transport=transport) as client:
        first = make_worker()
        first.add_service(FastImpl(), interface=Fast)
        first.add_workflow(ChangingWorkflow)
        async with first:  # this deployment has no Slow executor: the workflow waits there
            deferred = await client.dispatch(client.new_workflow(ChangingWorkflow).run)
            await _wait_for_backlog(transport, "task-executor:Slow")
        if changed:
            CODE_VERSION["v"] = 2
        second = make_worker()  # the redeployed worker
        second.add_service(FastImpl(), interface=Fast)
        second.add_service(SlowImpl(), interface=Slow)
        second.add_workflow(ChangingWorkflow)
        async with second:
            if not changed:
                assert await deferred == 3
                return
            with pytest.raises(WorkflowFailedError) as info:
                await deferred
    CODE_VERSION["v"] = 1
    task_failure = info.value.cause
    assert isinstance(task_failure, WorkflowTaskFailedError)
    changed_error = task_failure.cause
    assert isinstance(changed_error, WorkflowChangedError)
    assert changed_error.position == "run#1"
    assert changed_error.recorded == "task Slow.two"
    assert changed_error.found == "task Fast.other"
    assert (
        "at position run#1 the history holds task Slow.two but the code did task Fast.other"
        in str(info.value)
    )
