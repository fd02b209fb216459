"""Inside a workflow, awaiting a failed task's Deferred again after ``retry_tasks`` ran the task
again gives its new outcome, as in Infinitic (issue 12, item 1; end to end, cache on and off:
without the cache every step replays the history read back from storage, so the first await
must get the first failure again)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import WorkflowFailedError
from infinitic.storage import InMemoryStorage
from infinitic.worker.testing import replay_history

from .conftest import WorkerFactory
from .retried_tasks import CODE, AwaitsAgain, BugAfterCatch, Flaky, FlakyImpl


@pytest.fixture
def flaky() -> Iterator[FlakyImpl]:
    CODE["fixed"] = False
    yield FlakyImpl()
    CODE["fixed"] = False


@pytest.fixture
async def client(
    make_worker: WorkerFactory, flaky: FlakyImpl, storage: InMemoryStorage
) -> AsyncIterator[InfiniticClient]:
    worker = make_worker()
    worker.add_service(flaky, interface=Flaky, concurrency=4)
    worker.add_workflow(AwaitsAgain, concurrency=4)
    worker.add_workflow(BugAfterCatch, concurrency=4)
    async with worker, InfiniticClient(transport=worker.transport, storage=storage) as c:
        try:
            yield c
        finally:
            flaky.release.set()


async def _note(flaky: FlakyImpl) -> str:
    return await asyncio.wait_for(flaky.notes.get(), 10)


async def _gone(storage: InMemoryStorage) -> None:
    for _ in range(1000):
        if not storage.key_value.keys("workflow-state:"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the instance did not end")


async def test_an_await_after_the_retry_gets_the_new_result(
    client: InfiniticClient, flaky: FlakyImpl, storage: InMemoryStorage
) -> None:
    main = await client.dispatch(client.new_workflow(AwaitsAgain).run)
    running = client.get_workflow_by_id(AwaitsAgain, main.id)
    first = await _note(flaky)
    assert first.startswith("failed:")
    assert "broken attempt 1" in first
    assert first.endswith(",again:failed")  # awaited again before a retry: the same failure
    flaky.fixed = True
    await client.retry_tasks(running)  # the failed ones
    await asyncio.wait_for(flaky.started.wait(), 10)
    await running.go.send("retried")
    assert await _note(flaky) == "ongoing"  # from the step after the retry, it waits again
    state = await client.get_workflow_state(running)
    assert state is not None
    (task,) = [c for c in state["commands"].values() if c.get("method_name") == "compute"]
    assert task.get("status", "ongoing") == "ongoing"
    assert task["retry_sequence"] == 1
    assert [o["status"] for o in task["earlier_outcomes"]] == ["failed"]
    assert replay_history(AwaitsAgain, state) == len(state["steps"])  # replays as it ran
    flaky.release.set()
    result = await asyncio.wait_for(main, 10)
    assert result[0].startswith("failed:")
    assert result[1:] == ["again:failed", "40", "completed"]
    assert flaky.calls == 2
    await _gone(storage)


async def test_a_retry_that_fails_again_fails_the_method_until_retried_again(
    client: InfiniticClient, flaky: FlakyImpl, storage: InMemoryStorage
) -> None:
    main = await client.dispatch(client.new_workflow(AwaitsAgain, tags={"flaky-one"}).run)
    running = client.get_workflow_by_id(AwaitsAgain, main.id)
    assert "broken attempt 1" in await _note(flaky)
    state = await client.get_workflow_state(running)
    assert state is not None
    task_id = next(
        c["command_id"] for c in state["commands"].values() if c.get("method_name") == "compute"
    )
    await client.retry_tasks(running, task_ids=[task_id])  # still broken: fails again
    await asyncio.wait_for(flaky.failed_again.wait(), 10)
    await running.go.send("retried")
    assert await _note(flaky) in ("ongoing", "failed")  # the new failure may be there already
    with pytest.raises(WorkflowFailedError, match="broken attempt 2"):
        await asyncio.wait_for(main, 10)  # the await after the retry got the second failure
    flaky.fixed = True
    flaky.release.set()
    by_tag = client.get_workflow_by_tag(AwaitsAgain, "flaky-one")
    await client.retry_tasks(by_tag, service="Flaky")  # the method run goes on
    result = await asyncio.wait_for(main.result(), 10)
    assert "broken attempt 1" in result[0]
    assert result[1:] == ["again:failed", "40", "completed"]
    assert flaky.calls == 3
    await _gone(storage)


async def test_a_retry_then_a_fixed_workflow_task_hand_the_new_result(
    client: InfiniticClient, flaky: FlakyImpl, storage: InMemoryStorage
) -> None:
    main = await client.dispatch(client.new_workflow(BugAfterCatch).run)
    running = client.get_workflow_by_id(BugAfterCatch, main.id)
    assert await _note(flaky) == "caught"
    with pytest.raises(WorkflowFailedError, match="bug after the catch"):
        await asyncio.wait_for(main, 10)
    flaky.fixed = True
    flaky.release.set()
    await client.retry_tasks(running)  # the run failed on its own bug: it waits for a fix
    await asyncio.wait_for(flaky.started.wait(), 10)
    with pytest.raises(WorkflowFailedError, match="bug after the catch"):
        await asyncio.wait_for(main.result(), 10)  # the failure stands
    CODE["fixed"] = True
    await client.retry_workflow_task(running)  # the step runs again, the task ongoing again
    assert await asyncio.wait_for(main.result(), 10) == 30
    assert flaky.calls == 2
    await _gone(storage)
