"""An instance lives until everything it started has ended; Deferreds stay in workflow code
(issue 12, items 7 and 8; end to end, cache on and off)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import WorkflowCanceledError, WorkflowFailedError
from infinitic.storage import InMemoryStorage

from .conftest import WorkerFactory
from .lifetime import Escaper, Forever, Gate, GateImpl, Launcher


@pytest.fixture
def gate() -> GateImpl:
    return GateImpl()


@pytest.fixture
async def client(make_worker: WorkerFactory, gate: GateImpl) -> AsyncIterator[InfiniticClient]:
    worker = make_worker()
    worker.add_service(gate, interface=Gate, concurrency=10)
    for workflow in (Launcher, Forever, Escaper):
        worker.add_workflow(workflow, concurrency=10)
    async with worker, InfiniticClient(transport=worker.transport) as c:
        try:
            yield c
        finally:
            gate.release.set()  # nothing stays blocked at close


async def eventually(predicate: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if await predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def states(storage: InMemoryStorage) -> list[str]:
    return storage.key_value.keys("workflow-state:")


async def test_a_fire_and_forget_task_keeps_the_instance_and_its_properties(
    client: InfiniticClient, gate: GateImpl, storage: InMemoryStorage
) -> None:
    stub = client.new_workflow(Launcher, tags={"lifetime-task"})
    deferred = await client.dispatch(stub.fire_task, "kept")
    assert await deferred == "started"
    await eventually(lambda: _true(gate.held == 1))
    running = client.get_workflow_by_id(Launcher, deferred.id)
    assert len(states(storage)) == 1  # the task has not ended
    assert await client.get_ids(client.get_workflow_by_tag(Launcher, "lifetime-task")) == [
        deferred.id
    ]
    assert await running.read_label() == "kept"  # a new method run sees the properties
    gate.release.set()  # the task ends: its result is applied, then the instance ends

    async def gone() -> bool:
        tagged = await client.get_ids(client.get_workflow_by_tag(Launcher, "lifetime-task"))
        return not states(storage) and tagged == []

    await eventually(gone)


async def test_a_cancel_reaches_a_child_of_a_method_that_returned(
    client: InfiniticClient, storage: InMemoryStorage
) -> None:
    deferred = await client.dispatch(client.new_workflow(Launcher).fire_child)
    assert await deferred == "started"

    async def child_started() -> bool:
        tagged = client.get_workflow_by_tag(Forever, "lifetime-child")
        return len(await client.get_ids(tagged)) == 1

    await eventually(child_started)
    (child_id,) = await client.get_ids(client.get_workflow_by_tag(Forever, "lifetime-child"))
    child = client.get_workflow_by_id(Forever, child_id)
    waiting = asyncio.ensure_future(child.run())
    assert len(states(storage)) == 2  # the parent waits for its child
    await client.cancel(client.get_workflow_by_id(Launcher, deferred.id))
    with pytest.raises(WorkflowCanceledError):
        await asyncio.wait_for(waiting, 10)
    await eventually(lambda: _true(not states(storage)))


async def test_a_child_of_a_method_that_returned_ends_the_instance_when_it_ends(
    client: InfiniticClient, storage: InMemoryStorage
) -> None:
    deferred = await client.dispatch(client.new_workflow(Launcher).fire_child)
    assert await deferred == "started"
    tagged = client.get_workflow_by_tag(Forever, "lifetime-child")

    async def child_started() -> bool:
        return len(await client.get_ids(tagged)) == 1

    await eventually(child_started)
    assert len(states(storage)) == 2  # the parent waits for its child
    await client.get_workflow_by_tag(Forever, "lifetime-child").stop.send("bye")
    await eventually(lambda: _true(not states(storage)))


async def test_a_method_dispatched_on_the_own_instance_is_never_lost(
    client: InfiniticClient, gate: GateImpl, storage: InMemoryStorage
) -> None:
    for i in range(10):
        stub = client.new_workflow(Launcher)
        assert await stub.call_myself(f"m{i}") == "dispatched"
    await eventually(lambda: _true(len(gate.notes) == 10))
    assert sorted(gate.notes) == sorted(f"m{i}:initial" for i in range(10))
    await eventually(lambda: _true(not states(storage)))


@pytest.mark.parametrize("method", ["in_property", "in_list_property"])
async def test_a_deferred_kept_in_a_property_fails_the_workflow_task(
    client: InfiniticClient, method: str
) -> None:
    stub = client.new_workflow(Escaper)
    with pytest.raises(WorkflowFailedError, match="Deferred") as raised:
        await asyncio.wait_for(getattr(stub, method)(), 10)
    assert "property" in str(raised.value)


@pytest.mark.parametrize("method", ["as_argument", "as_child_argument"])
async def test_a_deferred_passed_as_an_argument_fails_the_workflow_task(
    client: InfiniticClient, method: str
) -> None:
    stub = client.new_workflow(Escaper)
    with pytest.raises(WorkflowFailedError, match="Deferred") as raised:
        await asyncio.wait_for(getattr(stub, method)(), 10)
    assert "argument" in str(raised.value)


async def test_a_deferred_awaited_in_its_method_is_fine(client: InfiniticClient) -> None:
    assert await client.new_workflow(Escaper).awaited_locally() == 5


def _true(value: bool) -> Awaitable[bool]:
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future
