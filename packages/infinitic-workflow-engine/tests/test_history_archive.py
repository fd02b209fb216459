"""Settled history moves to archived chunks: a step costs the same however long the history."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

from infinitic.client import InfiniticClient
from infinitic.common import command_id, read_workflow_state, workflow_state_key
from infinitic.common.messages import (
    CommandResult,
    DispatchWorkflow,
    ExecuteWorkflowTask,
    MethodOutcomeInfo,
    TaskCommand,
    WorkflowTaskCompleted,
)
from infinitic.exceptions import ConfigurationError, CorruptedValueError
from infinitic.storage import InMemoryKeyValueStorage, InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker
from infinitic.workflow_engine import (
    StorageHistoryLoader,
    WorkflowStateEngine,
    decode_state,
    replay_history,
    state_key,
)
from infinitic.workflows import Channel, Workflow, new_service

from .capturing import CapturingTransport


def task_command(cid: str, step: int) -> TaskCommand:
    return TaskCommand(
        command_id=cid,
        method_run_id="wf",
        position=step,
        step=step,
        service_name="S",
        method_name="m",
    )


class Driver:
    """Plays the executor and the service by hand against one state engine."""

    def __init__(self, chunk_steps: int) -> None:
        self.transport = CapturingTransport()
        self.kv = InMemoryKeyValueStorage()
        self.engine = WorkflowStateEngine(
            "W", self.transport, self.kv, clock=lambda: 1000.0, history_chunk_steps=chunk_steps
        )
        self.results: list[CommandResult] = []

    def last_task(self) -> ExecuteWorkflowTask:
        return [m for m in self.transport.sent if isinstance(m, ExecuteWorkflowTask)][-1]

    async def start(self) -> None:
        await self.engine.handle(
            DispatchWorkflow(workflow_name="W", workflow_id="wf", method_name="run", method_args=[])
        )

    async def step(self, index: int, *, finish: bool = False) -> None:
        """Complete the running workflow task (step ``index``) with one new task, then the
        task's result; or with the method's outcome."""
        task = self.last_task()
        assert task.steps[-1].index == index
        cid = command_id("wf", "wf", index)
        await self.engine.handle(
            WorkflowTaskCompleted(
                workflow_name="W",
                workflow_id="wf",
                workflow_task_id=task.workflow_task_id,
                state_version=task.state_version,
                incarnation=task.incarnation,
                step=index,
                new_commands=[] if finish else [task_command(cid, index)],
                method_outcomes=(
                    [MethodOutcomeInfo(method_run_id="wf", status="completed", value=index)]
                    if finish
                    else []
                ),
            )
        )
        if not finish:
            result = CommandResult(
                workflow_name="W", workflow_id="wf", command_id=cid, status="completed", value=index
            )
            self.results.append(result)
            await self.engine.handle(result)

    async def stored(self) -> tuple[int, bytes]:
        stored = await self.kv.get(state_key("W", "wf"))
        assert stored is not None
        return stored.version, stored.value


async def test_settled_steps_leave_the_state_and_come_back_whole() -> None:
    driver = Driver(chunk_steps=4)
    await driver.start()
    sizes = []
    for index in range(30):
        await driver.step(index)
        sizes.append(len((await driver.stored())[1]))
    _, value = await driver.stored()
    state = decode_state("k", value)
    assert state.step_count() == 31
    assert len(state.steps) <= 6  # the recent history only
    assert len(state.commands) <= 6
    assert len(state.archive) >= 5
    # the state does not grow with the history (only its list of chunk keys does)
    assert max(sizes[20:]) < 1.3 * max(sizes[5:15])
    assert len(driver.kv) == 1 + len(state.archive) + (1 if state.archiving else 0)

    whole = await StorageHistoryLoader(driver.kv)(driver.last_task())
    assert whole is not None
    assert [s.index for s in whole.steps] == list(range(31))
    assert sorted(whole.commands) == sorted(command_id("wf", "wf", i) for i in range(30))
    assert all(c.value == int(c.position) for c in whole.commands.values())
    assert whole.archive == []
    assert whole.archived_steps == 0

    plain = await read_workflow_state(driver.kv, "W", "wf")
    assert plain is not None
    assert [s["index"] for s in plain["steps"]] == list(range(31))
    assert len(plain["commands"]) == 30
    assert "archive" not in plain
    assert "archived_steps" not in plain


async def test_a_late_duplicate_of_an_archived_result_is_dropped() -> None:
    driver = Driver(chunk_steps=2)
    await driver.start()
    for index in range(10):
        await driver.step(index)
    version, before = await driver.stored()
    state = decode_state("k", before)
    first = driver.results[0]
    assert first.command_id not in state.commands  # archived
    await driver.engine.handle(first)  # neither postponed (RetryLater) nor kept as early
    assert await driver.stored() == (version, before)


async def test_a_finished_instance_leaves_no_chunk_behind() -> None:
    driver = Driver(chunk_steps=2)
    await driver.start()
    for index in range(9):
        await driver.step(index)
    assert len(driver.kv) > 1
    await driver.step(9, finish=True)
    assert len(driver.kv) == 0


async def test_a_missing_chunk_is_named() -> None:
    driver = Driver(chunk_steps=2)
    await driver.start()
    for index in range(8):
        await driver.step(index)
    state = decode_state("k", (await driver.stored())[1])
    await driver.kv.delete(state.archive[0])
    with pytest.raises(CorruptedValueError, match="archived history chunk"):
        await read_workflow_state(driver.kv, "W", "wf")
    with pytest.raises(CorruptedValueError, match=state.archive[0]):
        await StorageHistoryLoader(driver.kv)(driver.last_task())


# -- end to end, through the public API --------------------------------------------------------


class Adder(Protocol):
    async def add(self, a: int, b: int) -> int: ...


class AdderImpl:
    async def add(self, a: int, b: int) -> int:
        return a + b


class Counting(Workflow):
    adder = new_service(Adder)
    go = Channel[str]()

    async def run(self, n: int) -> int:
        total = 0
        for i in range(n):
            total = await self.adder.add(total, i)
        await self.go.receive()
        for i in range(n):
            total = await self.adder.add(total, i)
        return total


@pytest.mark.parametrize("cache_size", [1000, 0])
async def test_a_long_workflow_with_an_archived_history(cache_size: int) -> None:
    transport, storage = InMemoryTransport(), InMemoryStorage()
    worker = InfiniticWorker(
        transport=transport,
        storage=storage,
        workflow_cache_size=cache_size,
        history_chunk_steps=3,
    )
    worker.add_service(AdderImpl(), interface=Adder, concurrency=4)
    worker.add_workflow(Counting, concurrency=4)
    async with worker, InfiniticClient(transport=transport, storage=storage) as client:
        deferred = await client.dispatch(client.new_workflow(Counting).run, 20)
        stub = client.get_workflow_by_id(Counting, deferred.id)
        for _ in range(500):  # until the first loop is done and the receive waits
            state = await client.get_workflow_state(stub)
            if state is not None and len(state.get("steps", [])) == 21:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the first loop did not end")
        assert [s["index"] for s in state["steps"]] == list(range(21))
        assert replay_history(Counting, state) == 21
        stored = await storage.key_value.get(workflow_state_key("Counting", deferred.id))
        assert stored is not None
        with pytest.raises(ConfigurationError, match="archived chunk"):
            replay_history(Counting, stored.value)

        if cache_size:
            assert worker.workflow_executor("Counting").cached_count() == 1
        await stub.go.send("now")
        assert await deferred.result() == 2 * sum(range(20))
        # an instance whose methods all returned leaves the cache at once
        assert worker.workflow_executor("Counting").cached_count() == 0
    assert len(storage.key_value) == 0  # nothing left: neither the state nor its chunks


def test_the_chunk_size_is_checked() -> None:
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigurationError, match="history_chunk_steps"):
            InfiniticWorker(
                transport=InMemoryTransport(),
                storage=InMemoryStorage(),
                history_chunk_steps=bad,  # type: ignore[arg-type]
            )
