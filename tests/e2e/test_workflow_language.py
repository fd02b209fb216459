"""The workflow language, end to end through the public API (cache on and off)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import (
    InfiniticError,
    WorkflowCanceledError,
    WorkflowFailedError,
    WorkflowUnknownError,
)
from infinitic.storage import InMemoryStorage
from infinitic.worker import InfiniticWorker

from .conftest import WorkerFactory
from .language import (
    FLAGS,
    Approval,
    Context,
    Counter_,
    Errors,
    Factorial,
    Fixable,
    Parallel,
    Parent,
    Rejection,
    Signals,
    Talker,
    Timers,
    Tools,
    ToolsImpl,
)

WORKFLOWS = [
    Factorial,
    Parallel,
    Timers,
    Signals,
    Talker,
    Counter_,
    Context,
    Errors,
    Parent,
    Fixable,
]


@pytest.fixture
def tools() -> ToolsImpl:
    return ToolsImpl()


@pytest.fixture
async def client(make_worker: WorkerFactory, tools: ToolsImpl) -> AsyncIterator[InfiniticClient]:
    FLAGS.update(fixed=False, patched=False, task_fixed=False)
    worker = make_worker()
    worker.add_service(tools, interface=Tools, concurrency=20)
    for workflow in WORKFLOWS:
        worker.add_workflow(workflow, concurrency=10)
    async with worker, InfiniticClient(transport=worker.transport) as c:
        yield c


async def eventually(predicate, seconds: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.01)):
        if await predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


# -- children -------------------------------------------------------------------------------


async def test_factorial_of_14_through_child_workflows(client: InfiniticClient) -> None:
    assert await client.new_workflow(Factorial).compute(14) == 87178291200


async def test_child_failure_propagates_as_nested_errors(client: InfiniticClient) -> None:
    result = await client.new_workflow(Errors).child_failure()
    assert result == "Errors.catch_and_raise <- TaskFailedError"


async def test_child_caller_timeout_while_the_child_keeps_running(
    client: InfiniticClient, storage: InMemoryStorage
) -> None:
    assert await client.new_workflow(Errors).child_timeout() == "timed out Timers"
    assert (
        len(storage.key_value.keys("workflow-state:")) == 1
    )  # the child still waits for its one-hour timer


# -- parallel work ------------------------------------------------------------------------------


async def test_many_deferreds_with_all_of(client: InfiniticClient) -> None:
    assert await client.new_workflow(Parallel).many(25) == [2 * i for i in range(25)]


async def test_nested_combinators(client: InfiniticClient) -> None:
    assert await client.new_workflow(Parallel).nested() == [[[2, 4], [6, [8]]], 20]


async def test_deferred_statuses_as_seen_in_replay(client: InfiniticClient) -> None:
    seen = await client.new_workflow(Parallel).statuses()
    assert seen == ["ongoing", "ongoing", "ongoing", "completed", "failed", "ongoing"]


async def test_create_task_and_gather(client: InfiniticClient) -> None:
    assert await client.new_workflow(Parallel).tasks_and_gather() == [0, 2, 4, 6, 8]


# -- timers -----------------------------------------------------------------------------------


async def test_durable_timers(client: InfiniticClient) -> None:
    assert await client.new_workflow(Timers).durations() == ["datetime", "True", "True"]


@pytest.mark.parametrize(("task", "timer", "winner"), [(0.0, 2.0, "task"), (2.0, 0.1, "timer")])
async def test_timer_racing_a_task(
    client: InfiniticClient, task: float, timer: float, winner: str
) -> None:
    assert await client.new_workflow(Timers).race_task(task, timer) == winner


async def test_asyncio_wait_for_uses_a_durable_timer(client: InfiniticClient) -> None:
    wf = client.new_workflow(Timers)
    assert await wf.wait_for(0.0) == "slept 0.0"
    assert await wf.wait_for(2.0) == "timed out"


async def test_complete_timers_from_the_client(client: InfiniticClient) -> None:
    deferred = await client.dispatch(client.new_workflow(Timers).long_wait)
    await asyncio.sleep(0.2)
    await client.complete_timers(client.get_workflow_by_id(Timers, deferred.id))
    assert await asyncio.wait_for(deferred.result(), 5) == "woke up"


# -- channels ---------------------------------------------------------------------------------


async def test_receive_with_a_json_filter(client: InfiniticClient) -> None:
    deferred = await client.dispatch(client.new_workflow(Signals).first_big_approval)
    running = client.get_workflow_by_id(Signals, deferred.id)
    await asyncio.sleep(0.1)
    await running.approvals.send(Approval(amount=50, by="small"))
    await running.approvals.send(Approval(amount=500, by="big"))
    assert await deferred == Approval(amount=500, by="big")


async def test_receive_with_a_limit(client: InfiniticClient) -> None:
    deferred = await client.dispatch(client.new_workflow(Signals).three)
    running = client.get_workflow_by_id(Signals, deferred.id)
    await asyncio.sleep(0.1)
    for note in ["a", "b", "c", "d"]:
        await running.notes.send(note)
    assert await deferred == ["a", "b", "c"]


async def test_receive_filtered_by_type(client: InfiniticClient) -> None:
    deferred = await client.dispatch(client.new_workflow(Signals).typed)
    running = client.get_workflow_by_id(Signals, deferred.id)
    await asyncio.sleep(0.1)
    await running.decisions.send(Approval(amount=1, by="x"))
    await running.decisions.send(Rejection(reason="too late"))
    assert await deferred == "too late"


async def test_several_receives_on_one_channel(client: InfiniticClient) -> None:
    deferred = await client.dispatch(client.new_workflow(Signals).two_receives)
    running = client.get_workflow_by_id(Signals, deferred.id)
    await asyncio.sleep(0.1)
    await running.approvals.send(Approval(amount=900, by="b"))
    await running.approvals.send(Approval(amount=9, by="s"))
    assert await deferred == ["s:9", "b:900"]


@pytest.mark.parametrize("send", [True, False])
async def test_signal_racing_a_timer(client: InfiniticClient, send: bool) -> None:
    deferred = await client.dispatch(client.new_workflow(Signals).signal_or_timeout, 1.0)
    await asyncio.sleep(0.1)
    if send:
        await client.get_workflow_by_id(Signals, deferred.id).notes.send("hello")
    assert await deferred == ("hello" if send else "timeout")


async def test_a_signal_sent_when_nothing_receives_is_discarded(client: InfiniticClient) -> None:
    deferred = await client.dispatch(client.new_workflow(Signals).late_receive)
    running = client.get_workflow_by_id(Signals, deferred.id)
    await running.notes.send("too early")
    await asyncio.sleep(0.5)
    await running.notes.send("in time")
    assert await deferred == "in time"


async def test_wrong_signal_type_is_refused(client: InfiniticClient) -> None:
    running = client.get_workflow_by_id(Signals, "any")
    with pytest.raises(InfiniticError, match="channel 'approvals'"):
        await running.approvals.send({"amount": "lots"})


async def test_a_workflow_signals_another(client: InfiniticClient) -> None:
    deferred = await client.dispatch(client.new_workflow(Signals).three)
    await asyncio.sleep(0.1)
    talker = client.new_workflow(Talker)
    for note in ["x", "y", "z"]:
        assert await talker.tell(deferred.id, note) == "sent"
    assert await deferred == ["x", "y", "z"]


# -- several methods on one instance -----------------------------------------------------------


async def test_methods_share_the_instance_properties(client: InfiniticClient) -> None:
    main = await client.dispatch(client.new_workflow(Counter_).run)
    running = client.get_workflow_by_id(Counter_, main.id)
    await asyncio.sleep(0.1)
    assert await running.increment(2) == 2
    other = await client.dispatch(running.increment, 3)
    assert await other == 5
    assert await client.new_workflow(Talker).ask(main.id) == 10  # a workflow calls a method
    await running.stop.send("now")
    assert await main == 10


async def test_unknown_instance(client: InfiniticClient) -> None:
    with pytest.raises(WorkflowUnknownError):
        await client.get_workflow_by_id(Counter_, "no-such-id").increment(1)


# -- context, inline, patched ------------------------------------------------------------------


async def test_workflow_context_is_deterministic(client: InfiniticClient) -> None:
    wf = client.new_workflow(Context, tags={"t1", "t2"}, meta={"k": b"v"})
    deferred = await client.dispatch(wf.describe)
    d = await deferred
    assert d["id"] == deferred.id
    assert (d["name"], d["method"], d["tags"], d["meta"]) == (
        "Context",
        "describe",
        ["t1", "t2"],
        {"k": "v"},
    )
    random_values = d["random"]
    assert isinstance(random_values, list)
    assert random_values[0] != random_values[1]


async def test_a_deferred_names_its_command_and_status(client: InfiniticClient) -> None:
    assert await client.new_workflow(Context).deferred_reprs() == [
        "<Deferred task Tools.add ongoing>",
        "<Deferred task Tools.add completed>",
    ]


async def test_inline_runs_once_and_is_replayed(client: InfiniticClient) -> None:
    values = await client.new_workflow(Context).inline_once()
    assert len(set(values)) == 3


async def test_a_command_inside_inline_is_refused(client: InfiniticClient) -> None:
    with pytest.raises(WorkflowFailedError, match="cannot be created inside inline"):
        await client.new_workflow(Context).inline_with_command()


# -- errors and timeouts -----------------------------------------------------------------------


async def test_task_failure_caught_in_workflow_code(client: InfiniticClient) -> None:
    assert await client.new_workflow(Errors).catch_task_failure() == [
        "Tools",
        "fail",
        "RemoteError",
        "RuntimeError: broken",
    ]


async def test_caller_side_task_timeout_while_the_task_keeps_running(
    client: InfiniticClient, tools: ToolsImpl
) -> None:
    assert await client.new_workflow(Errors).caller_timeout() == "timed out Tools.slow_with_timeout"
    await eventually(lambda: _true(tools.finished == ["slow 0.6"]))


async def _true(value: bool) -> bool:
    return value


# -- cancel, retry ------------------------------------------------------------------------------


async def test_cancel_cancels_the_children(
    client: InfiniticClient, storage: InMemoryStorage
) -> None:
    parent = await client.dispatch(client.new_workflow(Parent).wait_for_child)
    await eventually(
        lambda: _true(len(storage.key_value.keys("workflow-state:")) == 2)
    )  # parent and child
    await client.cancel(client.get_workflow_by_id(Parent, parent.id))
    with pytest.raises(WorkflowCanceledError):
        await parent
    await eventually(lambda: _true(len(storage.key_value) == 0))


async def test_retry_workflow_task_after_fixing_the_code(
    client: InfiniticClient, tools: ToolsImpl, storage: InMemoryStorage
) -> None:
    deferred = await client.dispatch(client.new_workflow(Fixable).run)
    with pytest.raises(WorkflowFailedError, match="bug in workflow code"):
        await deferred
    with pytest.raises(WorkflowFailedError, match="bug in workflow code"):
        await asyncio.wait_for(deferred.result(), 10)  # asked again: the failure stands
    FLAGS["fixed"] = True  # "deploy" the fix
    running = client.get_workflow_by_id(Fixable, deferred.id)
    assert (
        len(storage.key_value.keys("workflow-state:")) == 1
    )  # a failed workflow task keeps the instance
    await client.retry_workflow_task(running)
    assert await asyncio.wait_for(deferred.result(), 10) == 6  # the new outcome
    await eventually(lambda: _true(tools.calls["add"] == 2 and len(storage.key_value) == 0))


async def test_retry_failed_tasks(
    client: InfiniticClient, tools: ToolsImpl, storage: InMemoryStorage
) -> None:
    deferred = await client.dispatch(client.new_workflow(Fixable).with_failing_task)
    with pytest.raises(WorkflowFailedError, match="until retried"):
        await deferred
    FLAGS["task_fixed"] = True
    running = client.get_workflow_by_id(Fixable, deferred.id)
    await client.retry_tasks(running, status="failed")
    assert await asyncio.wait_for(deferred.result(), 10) == "resumed"  # the new outcome
    await eventually(lambda: _true(tools.calls["fail_unless_fixed"] == 2))
    await eventually(lambda: _true(len(storage.key_value) == 0))  # resumed and completed


async def test_patched_keeps_running_instances_on_the_old_path(client: InfiniticClient) -> None:
    old = await client.dispatch(client.new_workflow(Fixable).with_patch)
    await asyncio.sleep(0.1)  # the old instance is past the patched point
    FLAGS["patched"] = True
    new = await client.dispatch(client.new_workflow(Fixable).with_patch)
    assert await new == ["2", "20", "4"]
    assert await old == ["2", "4"]


async def test_check_mode_none_accepts_changed_code(tools: ToolsImpl) -> None:
    from infinitic.transport import InMemoryTransport

    transport, storage = InMemoryTransport(), InMemoryStorage()
    worker = InfiniticWorker(
        transport=transport, storage=storage, check_mode="none", workflow_cache_size=0
    )
    worker.add_service(tools, interface=Tools)
    worker.add_workflow(Parallel)
    async with worker, InfiniticClient(transport=transport) as c:
        assert await c.new_workflow(Parallel).many(3) == [0, 2, 4]


async def test_reading_a_workflow_state(
    make_worker: WorkerFactory, storage: InMemoryStorage, tools: ToolsImpl
) -> None:
    import json

    worker = make_worker()
    worker.add_service(tools, interface=Tools)
    worker.add_workflow(Timers)
    async with worker, InfiniticClient(transport=worker.transport, storage=storage) as c:
        deferred = await c.dispatch(c.new_workflow(Timers, meta={"k": b"\x00"}).long_wait)
        stub = c.get_workflow_by_id(Timers, deferred.id)
        await eventually(lambda: _has_steps(c, stub))
        state = await c.get_workflow_state(stub)
        assert state is not None
        json.dumps(state)  # JSON-compatible
        assert state["workflow_id"] == deferred.id
        assert state["meta"] == {"k": "AA=="}
        assert [c_["kind"] for c_ in state["commands"].values()] == ["timer"]
        assert await c.get_workflow_state(c.get_workflow_by_id(Timers, "nope")) is None
        await c.cancel(stub)


async def _has_steps(c: InfiniticClient, stub: object) -> bool:
    state = await c.get_workflow_state(stub)
    return bool(state and state.get("commands"))


async def test_a_workflow_runs_a_method_on_its_own_instance(client: InfiniticClient) -> None:
    main = await client.dispatch(client.new_workflow(Counter_).run)
    running = client.get_workflow_by_id(Counter_, main.id)
    await asyncio.sleep(0.1)
    assert await running.self_call() == 7
    await running.stop.send("now")
    assert await main == 7


async def test_retry_tasks_by_id_and_by_service(
    client: InfiniticClient, tools: ToolsImpl, storage: InMemoryStorage
) -> None:
    stubs = []
    for _ in range(2):
        d = await client.dispatch(client.new_workflow(Fixable).with_failing_task)
        with pytest.raises(WorkflowFailedError):
            await d
        stubs.append(client.get_workflow_by_id(Fixable, d.id))
    FLAGS["task_fixed"] = True
    state = await _state(client, storage, stubs[0])
    task_id = next(c["command_id"] for c in state["commands"].values() if c["kind"] == "task")
    await client.retry_tasks(stubs[0], task_ids=["unknown-id"])  # nothing to retry
    await client.retry_tasks(stubs[0], task_ids=[task_id])
    await client.retry_tasks(stubs[1], service="Tools")
    await eventually(lambda: _true(len(storage.key_value) == 0))
    assert tools.calls["fail_unless_fixed"] == 4


async def _state(client: InfiniticClient, storage: InMemoryStorage, stub: object) -> dict:  # type: ignore[type-arg]
    async with InfiniticClient(transport=client.transport, storage=storage) as reader:
        state = await reader.get_workflow_state(stub)
    assert state is not None
    return state


@pytest.mark.parametrize("workflow_cache_size", [2])
async def test_a_tiny_live_instance_cache_evicts_safely(client: InfiniticClient) -> None:
    results = await asyncio.gather(
        *(client.new_workflow(Parallel).tasks_and_gather() for _ in range(20))
    )
    assert results == [[0, 2, 4, 6, 8]] * 20
    assert await client.new_workflow(Parallel).many(30) == [2 * i for i in range(30)]
