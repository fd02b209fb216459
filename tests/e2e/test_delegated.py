"""Delegated tasks completed by a client (end to end, cache on and off)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import TaskFailedError, WorkflowFailedError
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport

from .conftest import WorkerFactory
from .tagged import Approvals, ApprovalsImpl, ApprovalWorkflow


@pytest.fixture
def approvals() -> ApprovalsImpl:
    return ApprovalsImpl()


@pytest.fixture
async def client(
    make_worker: WorkerFactory, approvals: ApprovalsImpl
) -> AsyncIterator[InfiniticClient]:
    worker = make_worker()
    worker.add_service(approvals, interface=Approvals, concurrency=10)
    worker.add_workflow(ApprovalWorkflow, concurrency=10)
    async with worker, InfiniticClient(transport=worker.transport) as c:
        yield c


async def eventually(predicate: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if await predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def settled(transport: InMemoryTransport) -> None:
    async def idle() -> bool:
        return transport.idle()

    await eventually(idle)


async def test_a_client_completes_a_delegated_task(
    client: InfiniticClient, approvals: ApprovalsImpl, storage: InMemoryStorage
) -> None:
    deferred = await client.dispatch(client.new_workflow(ApprovalWorkflow).ask, "bob")
    task_id = await asyncio.wait_for(approvals.task_ids.get(), 5)
    assert approvals.contexts[0].task_id == task_id
    assert approvals.contexts[0].tags == {"approval"}

    async def tagged() -> bool:
        return await storage.key_set.count("task-tag:Approvals:approval") == 1

    await eventually(tagged)  # the task is ongoing: tagged, and the workflow waits
    await asyncio.sleep(0.05)
    assert not deferred._future.done()
    await client.complete_delegated_task("Approvals", task_id, 41)
    assert await deferred == 42

    async def untagged() -> bool:
        return await storage.key_set.count("task-tag:Approvals:approval") == 0

    await eventually(untagged)


async def test_completion_from_inside_the_method_before_it_returns(
    client: InfiniticClient, approvals: ApprovalsImpl
) -> None:
    approvals.client = client
    assert await client.new_workflow(ApprovalWorkflow).ask("alice") == len("alice") + 1


async def test_completing_twice_or_an_unknown_task_does_nothing(
    client: InfiniticClient, approvals: ApprovalsImpl, transport: InMemoryTransport
) -> None:
    await client.complete_delegated_task(Approvals, "no-such-task", 1)  # by interface
    deferred = await client.dispatch(client.new_workflow(ApprovalWorkflow).ask, "bob")
    task_id = await asyncio.wait_for(approvals.task_ids.get(), 5)
    await client.complete_delegated_task("Approvals", task_id, 1)
    await client.complete_delegated_task("Approvals", task_id, 100)  # too late: ignored
    assert await deferred == 2
    await settled(transport)
    assert transport.dead_letters() == []
    approvals.client = client  # the worker keeps working
    assert await client.new_workflow(ApprovalWorkflow).ask("carol") == 6


async def test_a_value_of_the_wrong_type_is_refused_and_the_task_keeps_waiting(
    client: InfiniticClient, approvals: ApprovalsImpl, transport: InMemoryTransport
) -> None:
    deferred = await client.dispatch(client.new_workflow(ApprovalWorkflow).ask, "bob")
    task_id = await asyncio.wait_for(approvals.task_ids.get(), 5)
    await client.complete_delegated_task("Approvals", task_id, "not a number")
    await settled(transport)
    assert not deferred._future.done()
    await client.complete_delegated_task("Approvals", task_id, 9)
    assert await deferred == 10


async def test_delegated_declared_on_the_implementation(
    client: InfiniticClient, approvals: ApprovalsImpl
) -> None:
    deferred = await client.dispatch(client.new_workflow(ApprovalWorkflow).plain, "x")
    task_id = await asyncio.wait_for(approvals.task_ids.get(), 5)
    await client.complete_delegated_task("Approvals", task_id, 7)
    assert await deferred == 7


async def test_a_delegated_method_that_fails_fails_the_task(
    client: InfiniticClient, approvals: ApprovalsImpl, storage: InMemoryStorage
) -> None:
    approvals.fail = True
    with pytest.raises(WorkflowFailedError) as e:
        await client.new_workflow(ApprovalWorkflow).ask("eve")
    assert isinstance(e.value.cause, TaskFailedError)
    assert "eve may not ask" in str(e.value.cause.cause)

    async def forgotten() -> bool:
        return await storage.key_set.count("task-tag:Approvals:approval") == 0 and not any(
            k.startswith("task-delegated:") for k in storage.key_value._data
        )

    await eventually(forgotten)
