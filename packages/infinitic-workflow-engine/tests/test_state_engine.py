"""The state engine is idempotent: a message processed twice has the effect of once."""

from __future__ import annotations

from typing import Any

import pytest

from infinitic.common import command_id, decode_message, encode_message
from infinitic.common.messages import (
    CommandResult,
    Delivery,
    DispatchWorkflow,
    ExecuteWorkflowTask,
    InlineCommand,
    MethodOutcome,
    MethodOutcomeInfo,
    Requester,
    Step,
    TaskCommand,
    WorkflowTaskCompleted,
)
from infinitic.storage import InMemoryKeyValueStorage
from infinitic.transport import InMemoryTransport, RetryLater
from infinitic.workflow_engine import WorkflowStateEngine, decode_state, state_key
from infinitic.workflow_engine._state import EncodedParts, WorkflowState, encode_state


class CapturingTransport(InMemoryTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, Any]] = []

    async def publish(self, topic: str, data: bytes, **kwargs: Any) -> None:
        self.sent.append((topic, decode_message(data)))


def task_command(cid: str, position: int = 0) -> TaskCommand:
    """The command of a task S.m at ``position`` of the method run ``wf``."""
    return TaskCommand(
        command_id=cid,
        method_run_id="wf",
        position=position,
        step=position,
        service_name="S",
        method_name="m",
    )


async def _setup() -> tuple[WorkflowStateEngine, CapturingTransport, InMemoryKeyValueStorage]:
    transport, kv = CapturingTransport(), InMemoryKeyValueStorage()
    return WorkflowStateEngine("W", transport, kv, clock=lambda: 1000.0), transport, kv


async def test_duplicate_messages_have_no_double_effect() -> None:
    engine, transport, kv = await _setup()
    start = DispatchWorkflow(
        workflow_name="W",
        workflow_id="wf",
        method_name="run",
        method_args=[],
        requester=Requester.client("c"),
    )
    await engine.handle(start)
    await engine.handle(start)
    assert (await kv.get(state_key("W", "wf"))).version == 1  # type: ignore[union-attr]
    tasks = [m for t, m in transport.sent if isinstance(m, ExecuteWorkflowTask)]
    assert len(tasks) == 1

    cid = command_id("wf", "wf", 0)
    completed = WorkflowTaskCompleted(
        workflow_name="W",
        workflow_id="wf",
        workflow_task_id=tasks[0].workflow_task_id,
        state_version=tasks[0].state_version,
        incarnation=tasks[0].incarnation,
        step=0,
        new_commands=[task_command(cid)],
    )
    await engine.handle(completed)
    await engine.handle(completed)
    assert (await kv.get(state_key("W", "wf"))).version == 2  # type: ignore[union-attr]

    result = CommandResult(
        workflow_name="W", workflow_id="wf", command_id=cid, status="completed", value=5
    )
    await engine.handle(result)
    await engine.handle(result)
    stored = await kv.get(state_key("W", "wf"))
    assert stored is not None
    assert stored.version == 3
    state = decode_state("k", stored.value)
    assert len(state.steps) == 2
    assert [d.id for d in state.steps[1].deliveries] == [cid]
    tasks = [m for t, m in transport.sent if isinstance(m, ExecuteWorkflowTask)]
    assert len(tasks) == 2

    assert tasks[1].state_version == 2
    assert tasks[1].previous_task_id == tasks[0].workflow_task_id
    done = WorkflowTaskCompleted(
        workflow_name="W",
        workflow_id="wf",
        workflow_task_id=tasks[1].workflow_task_id,
        state_version=tasks[1].state_version,
        incarnation=tasks[1].incarnation,
        step=1,
        method_outcomes=[MethodOutcomeInfo(method_run_id="wf", status="completed", value=5)],
    )
    await engine.handle(done)
    await engine.handle(done)
    assert await kv.get(state_key("W", "wf")) is None
    outcomes = [m for t, m in transport.sent if isinstance(m, MethodOutcome)]
    assert len(outcomes) == 1
    assert outcomes[0].value == 5


async def _dispatched() -> tuple[
    WorkflowStateEngine, InMemoryKeyValueStorage, list[float], ExecuteWorkflowTask
]:
    """An engine whose clock is ``now[0]``, after a dispatch: its first workflow task."""
    transport, kv = CapturingTransport(), InMemoryKeyValueStorage()
    now = [1000.0]
    engine = WorkflowStateEngine("W", transport, kv, clock=lambda: now[0])
    await engine.handle(
        DispatchWorkflow(workflow_name="W", workflow_id="wf", method_name="run", method_args=[])
    )
    task = next(m for t, m in transport.sent if isinstance(m, ExecuteWorkflowTask))
    return engine, kv, now, task


async def test_result_arriving_before_its_workflow_task_completed_is_buffered() -> None:
    engine, kv, now, task = await _dispatched()
    cid = command_id("wf", "wf", 0)
    early = CommandResult(
        workflow_name="W", workflow_id="wf", command_id=cid, status="completed", value="early"
    )
    # Fresh: the state that records the command may be coming, usually within milliseconds;
    # postponed for as long as it has been postponed so far, from 2 ms up to 50 ms.
    delays = []
    for elapsed in (0.0, 0.001, 0.002, 0.006, 0.02, 0.04, 0.1, 1.0):
        now[0] = 1000.0 + elapsed
        with pytest.raises(RetryLater) as later:
            await engine.handle(early)
        delays.append(later.value.delay)
    assert delays == pytest.approx([0.002, 0.002, 0.002, 0.006, 0.02, 0.04, 0.05, 0.05])
    # Still unknown a while later: kept in the state (the dispatcher may have crashed first)
    now[0] += 1.5
    await engine.handle(early)
    await engine.handle(
        WorkflowTaskCompleted(
            workflow_name="W",
            workflow_id="wf",
            workflow_task_id=task.workflow_task_id,
            state_version=task.state_version,
            step=0,
            new_commands=[task_command(cid)],
        )
    )
    stored = await kv.get(state_key("W", "wf"))
    assert stored is not None
    state = decode_state("k", stored.value)
    assert state.commands[cid].value == "early"
    assert state.early_results == {}
    assert state.commands[cid].delivered_step == 1


async def test_an_outcome_of_a_task_whose_state_is_not_stored_yet_comes_back_sooner_first() -> None:
    engine, kv, now, task = await _dispatched()
    stored = await kv.get(state_key("W", "wf"))
    assert stored is not None
    # The outcome of a task dispatched by a state another engine is still storing.
    outcome = WorkflowTaskCompleted(
        workflow_name="W",
        workflow_id="wf",
        workflow_task_id="a task of the next state",
        state_version=stored.version,
        incarnation=task.incarnation,
        step=1,
    )
    delays = []
    for elapsed in (0.0, 0.003, 0.5):
        now[0] = 1000.0 + elapsed
        with pytest.raises(RetryLater) as later:
            await engine.handle(outcome)
        delays.append(later.value.delay)
    assert delays == pytest.approx([0.002, 0.003, 0.05])


def test_messages_round_trip_through_the_envelope() -> None:
    m = DispatchWorkflow(
        workflow_name="W",
        workflow_id="1",
        method_name="run",
        method_args=[1, "a", None, [1.5], {"k": True}],
        meta={"k": b"\x00"},
    )
    assert decode_message(encode_message(m)) == m


async def test_decoded_states_are_reused_only_while_nobody_else_wrote() -> None:
    # Two engines (two workers) on one storage: each keeps the states it wrote, decoded; a
    # state written by the other must be read again, or A would store B's change away.
    a, transport, kv = await _setup()
    b = WorkflowStateEngine("W", transport, kv, clock=lambda: 1000.0)
    await a.handle(
        DispatchWorkflow(workflow_name="W", workflow_id="wf", method_name="run", method_args=[])
    )
    task = next(m for t, m in transport.sent if isinstance(m, ExecuteWorkflowTask))
    cid = command_id("wf", "wf", 0)
    await b.handle(
        WorkflowTaskCompleted(
            workflow_name="W",
            workflow_id="wf",
            workflow_task_id=task.workflow_task_id,
            state_version=task.state_version,
            step=0,
            new_commands=[task_command(cid)],
        )
    )
    await a.handle(
        CommandResult(
            workflow_name="W", workflow_id="wf", command_id=cid, status="completed", value=7
        )
    )
    stored = await kv.get(state_key("W", "wf"))
    assert stored is not None
    assert stored.version == 3
    state = decode_state("k", stored.value)
    assert state.commands[cid].value == 7  # B's command is there, with A's result
    assert [d.id for d in state.steps[1].deliveries] == [cid]
    # A's copy is reused for its next message: same result as reading it again
    reused = a._decoded.take(state_key("W", "wf"), stored.value)
    assert reused is not None
    assert reused[0].model_dump() == state.model_dump()


def test_settled_parts_packed_once_encode_the_same_state() -> None:
    # The engine reuses the packed bytes of past steps and delivered commands; whatever
    # changes (new steps, results, a retried task reset to ongoing, a removed step), the bytes
    # decode to the state itself.
    state = WorkflowState(workflow_name="W", workflow_id="wf", incarnation="i")
    parts = EncodedParts()

    def same() -> None:
        plain = decode_state("k", encode_state(state))
        assert decode_state("k", encode_state(state, parts)).model_dump() == plain.model_dump()
        assert plain.model_dump() == state.model_dump()

    same()
    for i in range(6):
        cid = f"c{i}"
        state.commands[cid] = task_command(cid, i)
        state.steps.append(Step(index=i, instant=float(i), deliveries=[]))
        same()
        state.commands[cid].status = "completed"
        state.commands[cid].value = i
        same()
        state.commands[cid].delivered_step = i + 1
        state.steps.append(
            Step(index=i + 1, instant=float(i), deliveries=[Delivery(kind="result", id=cid)])
        )
        same()
    inline = InlineCommand(
        command_id="x", method_run_id="wf", position=9, step=9, status="completed"
    )
    state.commands["x"] = inline
    same()
    retried = state.commands["c2"]  # retry_tasks: back to ongoing, then a new outcome
    retried.status, retried.value, retried.delivered_step = "ongoing", None, None
    retried.retry_sequence += 1
    same()
    retried.status, retried.value, retried.delivered_step = "failed", None, 20
    same()
    state.steps[-1].deliveries = []  # the last step may change, then go
    same()
    state.steps.pop()
    same()
    del state.commands["c0"]
    same()
