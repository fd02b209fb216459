"""Commands sent to every instance with a tag: signals, cancel, complete timers, retry."""

from __future__ import annotations

import asyncio

import pytest

from infinitic.client import ByTagDeferred, InfiniticClient
from infinitic.exceptions import (
    InfiniticError,
    InvalidPayloadError,
    WorkflowCanceledError,
    WorkflowFailedError,
)
from infinitic.storage import InMemoryStorage

from .conftest import WorkerFactory
from .language import FLAGS, Counter_, Fixable, Signals, Talker, Timers, Tools, ToolsImpl


@pytest.fixture
async def client(make_worker: WorkerFactory):  # type: ignore[no-untyped-def]
    FLAGS.update(fixed=False, patched=False, task_fixed=False)
    worker = make_worker()
    worker.add_service(ToolsImpl(), interface=Tools, concurrency=10)
    for workflow in (Signals, Timers, Fixable, Talker, Counter_):
        worker.add_workflow(workflow, concurrency=10)
    async with worker, InfiniticClient(transport=worker.transport) as c:
        yield c


async def _started(client: InfiniticClient, workflow: type, tag: str, n: int) -> None:
    stub = client.get_workflow_by_tag(workflow, tag)
    for _ in range(500):
        if len(await client.get_ids(stub)) == n:
            await asyncio.sleep(0.05)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("instances not tagged in time")


async def test_signal_by_tag_reaches_every_instance(client: InfiniticClient) -> None:
    deferreds = [
        await client.dispatch(client.new_workflow(Signals, tags={"batch:1"}).three)
        for _ in range(5)
    ]
    other = await client.dispatch(client.new_workflow(Signals, tags={"batch:2"}).three)
    await _started(client, Signals, "batch:1", 5)
    by_tag = client.get_workflow_by_tag(Signals, "batch:1")
    for note in ["a", "b", "c"]:
        await by_tag.notes.send(note)
    results = await asyncio.gather(*(d.result() for d in deferreds))
    assert results == [["a", "b", "c"]] * 5
    assert not other._future.done()
    await client.cancel(client.get_workflow_by_id(Signals, other.id))


async def test_cancel_by_tag(client: InfiniticClient, storage: InMemoryStorage) -> None:
    deferreds = [
        await client.dispatch(client.new_workflow(Timers, tags={"sleepy"}).long_wait)
        for _ in range(3)
    ]
    await _started(client, Timers, "sleepy", 3)
    await client.cancel(client.get_workflow_by_tag(Timers, "sleepy"))
    for d in deferreds:
        with pytest.raises(WorkflowCanceledError):
            await asyncio.wait_for(d.result(), 5)


async def test_complete_timers_by_tag(client: InfiniticClient) -> None:
    deferreds = [
        await client.dispatch(client.new_workflow(Timers, tags={"wake"}).long_wait)
        for _ in range(3)
    ]
    await _started(client, Timers, "wake", 3)
    await client.complete_timers(client.get_workflow_by_tag(Timers, "wake"))
    assert [await asyncio.wait_for(d.result(), 5) for d in deferreds] == ["woke up"] * 3


async def test_retry_workflow_task_by_tag(
    client: InfiniticClient, storage: InMemoryStorage
) -> None:
    deferreds = [
        await client.dispatch(client.new_workflow(Fixable, tags={"buggy"}).run) for _ in range(2)
    ]
    for d in deferreds:
        with pytest.raises(WorkflowFailedError):
            await d
    FLAGS["fixed"] = True
    await client.retry_workflow_task(client.get_workflow_by_tag(Fixable, "buggy"))
    for _ in range(500):
        if not await client.get_ids(client.get_workflow_by_tag(Fixable, "buggy")):
            break
        await asyncio.sleep(0.01)
    assert await client.get_ids(client.get_workflow_by_tag(Fixable, "buggy")) == []


async def test_by_tag_with_no_instance_does_nothing(client: InfiniticClient) -> None:
    nobody = client.get_workflow_by_tag(Timers, "nobody")
    await client.cancel(nobody)
    await client.complete_timers(nobody)
    await client.get_workflow_by_tag(Signals, "nobody").notes.send("lost")
    assert await client.get_ids(nobody) == []


async def test_a_workflow_signals_every_instance_with_a_tag(client: InfiniticClient) -> None:
    deferreds = [
        await client.dispatch(client.new_workflow(Signals, tags={"team"}).three) for _ in range(3)
    ]
    await _started(client, Signals, "team", 3)
    talker = client.new_workflow(Talker)
    for note in ["x", "y", "z"]:
        assert await talker.broadcast("team", note) == "broadcast"
    results = await asyncio.gather(*(d.result() for d in deferreds))
    assert results == [["x", "y", "z"]] * 3


async def test_method_dispatched_by_tag_runs_on_every_instance(client: InfiniticClient) -> None:
    mains = [
        await client.dispatch(client.new_workflow(Counter_, tags={"fleet:1"}).run) for _ in range(4)
    ]
    other = await client.dispatch(client.new_workflow(Counter_, tags={"fleet:2"}).run)
    await _started(client, Counter_, "fleet:1", 4)
    fleet = client.get_workflow_by_tag(Counter_, "fleet:1")
    first = await client.dispatch(fleet.increment, 5)
    assert isinstance(first, ByTagDeferred)
    assert first.tag == "fleet:1"
    await client.dispatch(fleet.increment, 2)
    with pytest.raises(InfiniticError, match="no single result"):
        await first
    with pytest.raises(InfiniticError, match=r"client.dispatch\(stub.increment"):
        await fleet.increment(1)  # nothing to wait for
    with pytest.raises(InvalidPayloadError, match="parameter 'n'"):
        await client.dispatch(fleet.increment, "five")  # checked before anything is sent

    async def total(workflow_id: str) -> int:
        return await client.get_workflow_by_id(Counter_, workflow_id).increment(0)

    for _ in range(500):  # both by-tag runs reach every instance with the tag
        if [await total(m.id) for m in mains] == [7, 7, 7, 7]:
            break
        await asyncio.sleep(0.01)
    await fleet.stop.send("done")
    await client.get_workflow_by_id(Counter_, other.id).stop.send("done")
    assert await asyncio.gather(*(m.result() for m in mains)) == [7, 7, 7, 7]
    assert await other.result() == 0  # another tag: untouched


async def test_workflow_dispatches_a_method_by_tag(client: InfiniticClient) -> None:
    mains = [
        await client.dispatch(client.new_workflow(Counter_, tags={"crew:1"}).run) for _ in range(3)
    ]
    await _started(client, Counter_, "crew:1", 3)
    talker = client.new_workflow(Talker)
    assert await talker.bump_all("crew:1", 4) == "bumped"
    assert await talker.bump_all("crew:1", 1) == "bumped"

    async def total(workflow_id: str) -> int:
        return await client.get_workflow_by_id(Counter_, workflow_id).increment(0)

    for _ in range(500):
        if [await total(m.id) for m in mains] == [5, 5, 5]:
            break
        await asyncio.sleep(0.01)
    await client.get_workflow_by_tag(Counter_, "crew:1").stop.send("done")
    assert await asyncio.gather(*(m.result() for m in mains)) == [5, 5, 5]  # each run once
    with pytest.raises(WorkflowFailedError, match=r"dispatch\(stub.increment"):
        await client.new_workflow(Talker).wait_for_all("crew:1")
