"""End-to-end scenarios on real backends: each database on the in-memory transport, and the
Pulsar transport (pulsar-lite) with in-memory and Redis storage. Public API only."""

from __future__ import annotations

import asyncio
import time

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import (
    MessageTooLargeError,
    RemoteError,
    TaskFailedError,
    WorkflowChangedError,
    WorkflowFailedError,
    WorkflowTaskFailedError,
)
from infinitic.workflow_engine import decode_state, state_key
from infinitic.workflows import Channel, Workflow, new_service, new_workflow, timer
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow

from .conftest import Stack
from .scenarios import (
    CODE_VERSION,
    ChangingWorkflow,
    Fast,
    FastImpl,
    Journal,
    JournalImpl,
    JournalWorkflow,
    Slow,
    SlowImpl,
    Steps,
    StepsImpl,
    StepsWorkflow,
)


def steps_worker(stack: Stack):  # type: ignore[no-untyped-def]
    worker = stack.worker()
    worker.add_service(StepsImpl(), interface=Steps, concurrency=8)
    worker.add_workflow(StepsWorkflow, concurrency=8)
    return worker


async def test_bank_wires(stack: Stack) -> None:
    bank = InMemoryBank({f"acc{i}": 100 for i in range(20)})
    emails = PrintingEmails()
    worker = stack.worker()
    worker.add_service(bank, interface=BankService, concurrency=10)
    worker.add_service(emails, interface=EmailService, concurrency=10)
    worker.add_workflow(BankWorkflow, concurrency=10)
    async with worker, InfiniticClient(transport=stack.transport) as client:
        deferreds = [
            await client.dispatch(
                client.new_workflow(BankWorkflow).wire, f"w{i}", f"acc{i}", f"acc{(i + 1) % 20}", 7
            )
            for i in range(20)
        ]
        results = await asyncio.gather(*deferreds)
        # Terminated instances are removed from storage. The engine sends the outcome before
        # it deletes the state (send before save), so a result can come a moment before the
        # deletion is done: wait for it, boundedly.
        for d in deferreds:
            for _ in range(600):  # 30 s at most
                if await stack.storage.key_value.get(state_key("BankWorkflow", d.id)) is None:
                    break
                await asyncio.sleep(0.05)
            assert await stack.storage.key_value.get(state_key("BankWorkflow", d.id)) is None
    assert [r.split(":")[0] for r in results] == [d.id for d in deferreds]
    assert all(r.endswith(f":email-w{i}-0") for i, r in enumerate(results))
    assert all(v == 100 for v in bank.balances.values())
    assert len(emails.sent) == 20


async def test_sequential_and_parallel_tasks(stack: Stack) -> None:
    async with steps_worker(stack), InfiniticClient(transport=stack.transport) as client:
        assert await client.new_workflow(StepsWorkflow).sequence(5) == [1, 3, 6, 10, 15]
        assert await client.new_workflow(StepsWorkflow).parallel(20) == list(range(1, 21))


async def test_retry_then_success(stack: Stack) -> None:
    async with steps_worker(stack), InfiniticClient(transport=stack.transport) as client:
        assert await client.new_workflow(StepsWorkflow).retried("k", 2) == 2


async def test_failure_chain(stack: Stack) -> None:
    async with steps_worker(stack), InfiniticClient(transport=stack.transport) as client:
        with pytest.raises(WorkflowFailedError) as info:
            await client.new_workflow(StepsWorkflow).doomed("no access")
    task_failure = info.value.cause
    assert isinstance(task_failure, TaskFailedError)
    assert (task_failure.service_name, task_failure.method_name) == ("Steps", "fail")
    assert isinstance(task_failure.cause, RemoteError)
    assert task_failure.cause.class_name.endswith("PermissionError")
    assert "no access" in str(info.value)


async def test_durable_timer(stack: Stack) -> None:
    async with steps_worker(stack), InfiniticClient(transport=stack.transport) as client:
        started = time.monotonic()
        results = await asyncio.gather(
            *(client.new_workflow(StepsWorkflow).nap(0.5, i) for i in range(5))
        )
        assert time.monotonic() - started >= 0.5
    assert results == list(range(5))


async def _wait_for_command(stack: Stack, workflow_id: str, service: str) -> None:
    key = state_key("ChangingWorkflow", workflow_id)
    for _ in range(500):
        stored = await stack.storage.key_value.get(key)
        if stored is not None:
            state = decode_state(key, stored.value)
            if any(c.service_name == service for c in state.commands.values()):
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the workflow never called {service}")


async def test_workflow_changed_error(stack: Stack) -> None:
    CODE_VERSION["v"] = 1
    try:
        async with InfiniticClient(transport=stack.transport) as client:
            first = stack.worker()
            first.add_service(FastImpl(), interface=Fast)
            first.add_workflow(ChangingWorkflow)
            async with first:  # no Slow executor here: the workflow waits on Slow.two
                deferred = await client.dispatch(client.new_workflow(ChangingWorkflow).run)
                await _wait_for_command(stack, deferred.id, "Slow")
            CODE_VERSION["v"] = 2
            second = stack.worker(workflow_cache_size=0)  # the redeployed worker
            second.add_service(FastImpl(), interface=Fast)
            second.add_service(SlowImpl(), interface=Slow)
            second.add_workflow(ChangingWorkflow)
            async with second:
                with pytest.raises(WorkflowFailedError) as info:
                    await deferred
    finally:
        CODE_VERSION["v"] = 1
    task_failure = info.value.cause
    assert isinstance(task_failure, WorkflowTaskFailedError)
    assert isinstance(task_failure.cause, WorkflowChangedError)
    assert "the history holds task Slow.two but the code did task Fast.other" in str(info.value)


async def test_a_batch_for_a_method_without_result_and_a_call_too_large(stack: Stack) -> None:
    journal = JournalImpl()
    worker = stack.worker()
    worker.add_service(journal, interface=Journal, concurrency=1)
    worker.add_workflow(JournalWorkflow, concurrency=4)
    async with worker, InfiniticClient(transport=stack.transport) as client:
        assert await client.new_workflow(JournalWorkflow).write(["a", "b", "c", "d"]) == 4
        assert sorted(journal.lines) == ["a", "b", "c", "d"]
        limit = stack.transport.max_message_bytes
        assert limit is not None
        with pytest.raises(MessageTooLargeError) as raised:
            await client.new_workflow(JournalWorkflow).write(["x" * limit])
        assert "JournalWorkflow.write" in str(raised.value)


class ChainChild(Workflow):
    steps = new_service(Steps)

    async def doomed(self, reason: str) -> None:
        await self.steps.fail(reason)

    async def raises(self) -> None:
        raise LookupError("no such wire")


class ChainParent(Workflow):
    letters = Channel[str]()

    async def doomed(self, reason: str) -> None:
        await new_workflow(ChainChild).doomed(reason)

    async def child_raises(self) -> None:
        await new_workflow(ChainChild).raises()

    async def letters_past_the_limit(self) -> str:
        received = self.letters.receive(limit=2)
        out = _flag(received.is_completed())
        await timer(0.3)
        out += _flag(received.is_completed())
        for _ in range(3):
            out += await received
        return out + received.status


def _flag(value: bool) -> str:
    return "T" if value else "F"


async def test_whole_failure_chains(stack: Stack, workflow_cache_size: int) -> None:
    worker = stack.worker(workflow_cache_size=workflow_cache_size)
    worker.add_service(StepsImpl(), interface=Steps, concurrency=8)
    worker.add_workflow(ChainParent)
    worker.add_workflow(ChainChild)
    async with worker, InfiniticClient(transport=stack.transport) as client:
        with pytest.raises(WorkflowFailedError) as info:
            await client.new_workflow(ChainParent).doomed("no access")
        child = info.value.cause
        assert isinstance(child, WorkflowFailedError)
        assert (child.workflow_name, child.method_name) == ("ChainChild", "doomed")
        task = child.cause
        assert isinstance(task, TaskFailedError)
        attempts, error = [], task.cause
        while error is not None:
            assert isinstance(error, RemoteError)
            assert error.class_name == "PermissionError"
            attempts.append(error.message)
            error = error.previous
        assert attempts == ["no access"] * 4  # the last attempt and the three before it

        with pytest.raises(WorkflowFailedError) as info:
            await client.new_workflow(ChainParent).child_raises()
        child = info.value.cause
        assert isinstance(child, WorkflowFailedError)
        assert isinstance(child.cause, WorkflowTaskFailedError)
        assert isinstance(child.cause.cause, RemoteError)
        assert child.cause.cause.class_name == "LookupError"


async def test_a_receive_has_a_status_and_a_limit(stack: Stack, workflow_cache_size: int) -> None:
    worker = stack.worker(workflow_cache_size=workflow_cache_size)
    worker.add_workflow(ChainParent)
    async with worker, InfiniticClient(transport=stack.transport) as client:
        deferred = await client.dispatch(client.new_workflow(ChainParent).letters_past_the_limit)
        stub = client.get_workflow_by_id(ChainParent, deferred.id)
        for letter in "abc":
            await stub.letters.send(letter)  # type: ignore[attr-defined]
        assert await deferred == "FTabbcompleted"
