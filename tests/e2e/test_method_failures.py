"""A failed workflow task fails only its method: the instance goes on (issue 12, item 2; end to
end, cache on and off)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import WorkflowFailedError
from infinitic.storage import InMemoryStorage

from .conftest import WorkerFactory
from .method_failures import FIX, Multi, Pause, PauseImpl, SlowChild, TimingOutParent


@pytest.fixture(autouse=True)
def unfixed() -> Iterator[None]:
    FIX["fixed"] = False
    yield
    FIX["fixed"] = False


@pytest.fixture
def pause() -> PauseImpl:
    return PauseImpl()


@pytest.fixture
async def client(make_worker: WorkerFactory, pause: PauseImpl) -> AsyncIterator[InfiniticClient]:
    worker = make_worker()
    worker.add_service(pause, interface=Pause, concurrency=10)
    for workflow in (Multi, SlowChild, TimingOutParent):
        worker.add_workflow(workflow, concurrency=10)
    async with worker, InfiniticClient(transport=worker.transport) as c:
        try:
            yield c
        finally:
            pause.release.set()


async def _gone(storage: InMemoryStorage) -> None:
    for _ in range(1000):
        if not storage.key_value.keys("workflow-state:"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the instance did not end")


async def test_the_other_methods_go_on_and_a_new_call_runs(
    client: InfiniticClient, storage: InMemoryStorage
) -> None:
    main = await client.dispatch(client.new_workflow(Multi).run)
    running = client.get_workflow_by_id(Multi, main.id)
    first = await client.dispatch(running.boom)
    with pytest.raises(WorkflowFailedError, match="bug in one method"):
        await asyncio.wait_for(first, 10)
    assert await asyncio.wait_for(running.ping(), 10) == []  # a new call runs
    await running.go.send("on")
    assert await asyncio.wait_for(main, 10) == "run:on"  # the main method went on
    second = await client.dispatch(running.boom)
    with pytest.raises(WorkflowFailedError, match="bug in one method"):
        await asyncio.wait_for(second, 10)
    assert await asyncio.wait_for(running.ping(), 10) == ["on"]  # failed steps left no trace
    assert len(storage.key_value.keys("workflow-state:")) == 1  # the failed runs keep it
    FIX["fixed"] = True
    await client.retry_workflow_task(running)  # resumes every failed method run
    assert await asyncio.wait_for(first.result(), 10) == "boom fixed"
    assert await asyncio.wait_for(second.result(), 10) == "boom fixed"
    await _gone(storage)


async def test_a_late_task_result_reaches_another_method(
    client: InfiniticClient, pause: PauseImpl, storage: InMemoryStorage
) -> None:
    main = await client.dispatch(client.new_workflow(Multi).waits_task)
    running = client.get_workflow_by_id(Multi, main.id)
    with pytest.raises(WorkflowFailedError, match="bug in one method"):
        await asyncio.wait_for(running.boom(), 10)
    pause.release.set()
    assert await asyncio.wait_for(main, 10) == 11
    FIX["fixed"] = True
    await client.retry_workflow_task(running)
    await _gone(storage)


async def test_a_method_failed_after_a_task_resumes_after_a_fix(
    client: InfiniticClient, pause: PauseImpl, storage: InMemoryStorage
) -> None:
    pause.release.set()
    deferred = await client.dispatch(client.new_workflow(Multi).boom_later)
    with pytest.raises(WorkflowFailedError, match="bug after a task"):
        await asyncio.wait_for(deferred, 10)
    running = client.get_workflow_by_id(Multi, deferred.id)
    assert await asyncio.wait_for(running.ping(), 10) == []
    FIX["fixed"] = True
    await client.retry_workflow_task(running)
    assert await asyncio.wait_for(deferred.result(), 10) == 2  # waiting again: the new outcome
    await _gone(storage)


async def test_a_failed_branch_fails_its_method_only(
    client: InfiniticClient, pause: PauseImpl
) -> None:
    main = await client.dispatch(client.new_workflow(Multi).run)
    running = client.get_workflow_by_id(Multi, main.id)
    with pytest.raises(WorkflowFailedError, match="bug on a branch"):
        await asyncio.wait_for(running.branches(), 10)
    pause.release.set()
    await running.go.send("still")
    assert await asyncio.wait_for(main, 10) == "run:still"


async def test_a_child_ending_after_its_callers_timeout_leaves_the_parent_going(
    client: InfiniticClient, storage: InMemoryStorage
) -> None:
    main = await client.dispatch(client.new_workflow(TimingOutParent).run)
    parent = client.get_workflow_by_id(TimingOutParent, main.id)
    with pytest.raises(WorkflowFailedError) as raised:
        await asyncio.wait_for(parent.call_child(), 10)  # its child timed out
    assert "timed out" in str(raised.value)
    await client.get_workflow_by_tag(SlowChild, "slow-child").done.send("late")
    for _ in range(500):  # the child ends; its late result changes nothing for the parent
        if len(storage.key_value.keys("workflow-state:")) == 1:
            break
        await asyncio.sleep(0.01)
    await parent.go.send("on")
    assert await asyncio.wait_for(main, 10) == "run:on"  # the parent went on
