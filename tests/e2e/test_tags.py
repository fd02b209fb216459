"""Workflow tags, custom ids, ids by tag and by-tag fan-out; service task tags (end to end,
cache on and off)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from infinitic.client import InfiniticClient, WorkflowByTagStub
from infinitic.common.messages import CancelWorkflow, SendSignal
from infinitic.exceptions import WorkflowCanceledError
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport

from .conftest import WorkerFactory
from .tagged import Parent, Slow, SlowImpl, SlowWorkflow, Waiter


@pytest.fixture
def slow() -> SlowImpl:
    return SlowImpl()


@pytest.fixture
async def client(make_worker: WorkerFactory, slow: SlowImpl) -> AsyncIterator[InfiniticClient]:
    worker = make_worker()
    worker.add_service(slow, interface=Slow, concurrency=10)
    for workflow in (Waiter, Parent, SlowWorkflow):
        worker.add_workflow(workflow, concurrency=10)
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


async def ids(client: InfiniticClient, tag: str, **kwargs: int) -> list[str]:
    return await client.get_ids(client.get_workflow_by_tag(Waiter, tag), **kwargs)


async def test_ids_by_tag_while_running_then_tags_removed(
    client: InfiniticClient, storage: InMemoryStorage
) -> None:
    waiter = client.new_workflow(Waiter, tags={"group:a", "color:red"})
    deferreds = [await client.dispatch(waiter.run, f"w{i}") for i in range(3)]
    started = sorted(d.id for d in deferreds)

    async def all_tagged() -> bool:
        return await ids(client, "group:a") == started

    await eventually(all_tagged)
    assert await ids(client, "color:red") == started
    assert await ids(client, "nothing") == []
    stub = client.get_workflow_by_tag(Waiter, "group:a")
    assert isinstance(stub, WorkflowByTagStub)
    assert (stub.workflow, stub.workflow_name, stub.tag) == (Waiter, "Waiter", "group:a")

    for d in deferreds:
        await client.get_workflow_by_id(Waiter, d.id).stop.send("bye")
    assert [await d for d in deferreds] == [f"w{i}:bye:{d.id}" for i, d in enumerate(deferreds)]

    async def untagged() -> bool:
        return await ids(client, "group:a") == [] and await ids(client, "color:red") == []

    await eventually(untagged)
    assert await storage.key_set.count("workflow-tag:Waiter:group:a") == 0


async def test_ids_by_tag_page_by_page(client: InfiniticClient) -> None:
    waiter = client.new_workflow(Waiter, tags={"many"})
    deferreds = [await client.dispatch(waiter.run, str(i)) for i in range(25)]

    async def all_tagged() -> bool:
        return len(await ids(client, "many", page_size=7)) == 25

    await eventually(all_tagged)
    assert await ids(client, "many", page_size=7) == sorted(d.id for d in deferreds)
    await client._send_by_tag(
        "Waiter", "many", CancelWorkflow(workflow_name="Waiter", workflow_id="")
    )
    for d in deferreds:
        with pytest.raises(WorkflowCanceledError):
            await d


async def test_custom_id_makes_a_singleton(client: InfiniticClient) -> None:
    first = await client.dispatch(client.new_workflow(Waiter, tags={"customId:order-1"}).run, "a")
    second_stub = client.new_workflow(Waiter, tags={"customId:order-1", "other"})
    second = await client.dispatch(second_stub.run, "b")
    assert second.id == first.id  # no second instance: the running one answers
    waiting = asyncio.ensure_future(second_stub.run("c"))  # awaited start, also joins
    assert await ids(client, "customId:order-1") == [first.id]
    assert await ids(client, "other") == []  # the second start added no tag
    await asyncio.sleep(0.05)
    await client.get_workflow_by_id(Waiter, first.id).stop.send("done")
    expected = f"a:done:{first.id}"
    assert await first == expected
    assert await second == expected
    assert await waiting == expected

    async def released() -> bool:
        return await ids(client, "customId:order-1") == []

    await eventually(released)
    third = await client.dispatch(client.new_workflow(Waiter, tags={"customId:order-1"}).run, "d")
    assert third.id != first.id  # the custom id is free again: a new instance
    await client.get_workflow_by_id(Waiter, third.id).stop.send("x")
    assert await third == f"d:x:{third.id}"


async def test_concurrent_starts_with_one_custom_id_run_once(client: InfiniticClient) -> None:
    stub = client.new_workflow(Waiter, tags={"customId:race"})
    deferreds = await asyncio.gather(*(client.dispatch(stub.run, str(i)) for i in range(10)))
    assert len({d.id for d in deferreds}) == 1
    assert await ids(client, "customId:race") == [deferreds[0].id]
    await client.get_workflow_by_id(Waiter, deferreds[0].id).stop.send("one")
    results = {await d for d in deferreds}
    assert len(results) == 1


async def test_more_than_one_custom_id_is_refused(client: InfiniticClient) -> None:
    stub = client.new_workflow(Waiter, tags={"customId:a", "customId:b"})
    with pytest.raises(ValueError, match="one customId"):
        await client.dispatch(stub.run, "x")


async def test_fan_out_sends_a_command_to_every_instance_with_the_tag(
    client: InfiniticClient, transport: InMemoryTransport
) -> None:
    tagged = client.new_workflow(Waiter, tags={"fleet"})
    others = client.new_workflow(Waiter, tags={"elsewhere"})
    deferreds = [await client.dispatch(tagged.run, f"t{i}") for i in range(5)]
    other = await client.dispatch(others.run, "o")

    async def all_tagged() -> bool:
        return len(await ids(client, "fleet")) == 5 and len(await ids(client, "elsewhere")) == 1

    await eventually(all_tagged)
    stub = client.get_workflow_by_tag(Waiter, "fleet")
    signal = stub.command(
        SendSignal, channel_name="stop", signal_id="s1", data="all", type_names=[]
    )
    await client._send_by_tag(stub.workflow_name, stub.tag, signal)
    assert [await d for d in deferreds] == [f"t{i}:all:{d.id}" for i, d in enumerate(deferreds)]
    await settled(transport)
    assert await ids(client, "elsewhere") == [other.id]  # the other instance still runs
    await client.get_workflow_by_id(Waiter, other.id).stop.send("later")
    assert await other == f"o:later:{other.id}"


async def test_fan_out_with_no_instance_does_nothing(
    client: InfiniticClient, transport: InMemoryTransport
) -> None:
    await client._send_by_tag(
        "Waiter", "nobody", CancelWorkflow(workflow_name="Waiter", workflow_id="")
    )
    await settled(transport)
    assert transport.dead_letters() == []
    assert await ids(client, "nobody") == []


async def test_fan_out_refuses_a_command_of_another_workflow(client: InfiniticClient) -> None:
    with pytest.raises(ValueError, match="cannot be sent"):
        await client._send_by_tag(
            "Waiter", "x", CancelWorkflow(workflow_name="Parent", workflow_id="")
        )


async def test_child_workflow_tags(client: InfiniticClient) -> None:
    parent = await client.dispatch(client.new_workflow(Parent).start_child, "kid")

    async def child_tagged() -> bool:
        return len(await ids(client, "kid")) == 1

    await eventually(child_tagged)
    (child_id,) = await ids(client, "kid")
    await client.get_workflow_by_id(Waiter, child_id).stop.send("hi")
    assert await parent == f"child:hi:{child_id}"


async def test_task_tags_in_context_and_removed_when_done(
    client: InfiniticClient, slow: SlowImpl, storage: InMemoryStorage
) -> None:
    deferred = await client.dispatch(client.new_workflow(SlowWorkflow).run, 4)

    async def tagged() -> bool:
        return await storage.key_set.count("task-tag:Slow:slow") == 1

    await eventually(tagged)
    (ctx,) = slow.contexts
    assert ctx.tags == {"slow", "batch:7"}
    assert dict(ctx.meta) == {"origin": b"test"}
    assert ctx.workflow_id == deferred.id
    assert ctx.workflow_name == "SlowWorkflow"
    page = await storage.key_set.page("task-tag:Slow:batch:7")
    assert page.members == [ctx.task_id]
    slow.release.set()
    assert await deferred == 40

    async def untagged() -> bool:
        return (
            await storage.key_set.count("task-tag:Slow:slow") == 0
            and await storage.key_set.count("task-tag:Slow:batch:7") == 0
        )

    await eventually(untagged)


async def test_tag_requests_time_out_when_no_worker_answers() -> None:
    transport = InMemoryTransport()  # no worker: nobody runs Waiter's tag engine
    async with InfiniticClient(transport=transport, request_timeout=0.2) as client:
        with pytest.raises(TimeoutError, match="is a worker of Waiter running"):
            await client.get_ids(client.get_workflow_by_tag(Waiter, "group:a"))
        singleton = client.new_workflow(Waiter, tags={"customId:only-one"})
        with pytest.raises(TimeoutError, match="DispatchWorkflowByTags"):
            await client.dispatch(singleton.run, "w")
