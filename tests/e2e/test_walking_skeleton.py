"""End-to-end scenarios of the walking skeleton, through the public API only."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from infinitic.exceptions import (
    InvalidPayloadError,
    RemoteError,
    TaskFailedError,
    UnknownMethodError,
    WorkflowFailedError,
    WorkflowTaskFailedError,
)
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow

from .conftest import WorkerFactory, running
from .scenarios import (
    Address,
    Color,
    Echo,
    EchoImpl,
    EchoWorkflow,
    Flaky,
    FlakyImpl,
    FlakyWorkflow,
    Parcel,
    RetryingFlaky,
)


def bank_worker(
    make_worker: WorkerFactory, bank: InMemoryBank, emails: PrintingEmails, concurrency: int = 10
):  # type: ignore[no-untyped-def]
    worker = make_worker()
    worker.add_service(bank, interface=BankService, concurrency=concurrency)
    worker.add_service(emails, interface=EmailService, concurrency=concurrency)
    worker.add_workflow(BankWorkflow, concurrency=concurrency)
    return worker


async def test_sequential_tasks(make_worker: WorkerFactory) -> None:
    bank, emails = InMemoryBank({"alice": 100, "bob": 0}), PrintingEmails()
    async with running(bank_worker(make_worker, bank, emails)) as client:
        wf = client.new_workflow(BankWorkflow)
        result = await wf.wire("w1", "alice", "bob", 30)
    workflow_id, receipt = result.split(":")
    assert receipt == "email-w1-0"
    uuid.UUID(workflow_id)
    assert bank.balances == {"alice": 70, "bob": 30}
    assert emails.sent == [("alice", "you sent 30 to bob")]


async def test_dispatch_returns_a_deferred_awaited_later(make_worker: WorkerFactory) -> None:
    bank, emails = InMemoryBank(), PrintingEmails()
    async with running(bank_worker(make_worker, bank, emails)) as client:
        wf = client.new_workflow(BankWorkflow)
        deferreds = [await client.dispatch(wf.wire, f"w{i}", "a", "b", 1) for i in range(5)]
        assert len({d.id for d in deferreds}) == 5
        results = [await d for d in deferreds]
        assert [r.split(":")[0] for r in results] == [d.id for d in deferreds]
        assert await deferreds[0] == results[0]  # awaiting twice gives the same result
    assert bank.balances == {"a": -5, "b": 5}


async def test_task_failing_then_succeeding_on_retry(make_worker: WorkerFactory) -> None:
    flaky = RetryingFlaky()
    worker = make_worker()
    worker.add_service(flaky, interface=Flaky)
    worker.add_workflow(FlakyWorkflow)
    async with running(worker) as client:
        retry_index = await client.new_workflow(FlakyWorkflow).retried("k", 2)
    assert retry_index == 2
    assert flaky.calls["k"] == 3


async def test_task_failing_for_good(make_worker: WorkerFactory) -> None:
    flaky = RetryingFlaky()
    worker = make_worker()
    worker.add_service(flaky, interface=Flaky)
    worker.add_workflow(FlakyWorkflow)
    async with running(worker) as client:
        with pytest.raises(WorkflowFailedError) as info:
            await client.new_workflow(FlakyWorkflow).doomed("no access")
    error = info.value
    assert error.workflow_name == "FlakyWorkflow"
    assert error.method_name == "doomed"
    assert isinstance(error.cause, TaskFailedError)
    assert error.cause.service_name == "Flaky"
    assert error.cause.method_name == "always_fail"
    assert isinstance(error.cause.cause, RemoteError)
    assert error.cause.cause.class_name == "PermissionError"
    assert error.cause.cause.message == "no access"
    assert "always_fail" in error.cause.cause.stack
    assert "Flaky.always_fail" in str(error)
    assert "PermissionError: no access" in str(error)
    assert flaky.calls["always_fail"] == 4  # first attempt + 3 retries


async def test_no_retry_unless_configured(make_worker: WorkerFactory) -> None:
    flaky = FlakyImpl()
    worker = make_worker()
    worker.add_service(flaky, interface=Flaky)
    worker.add_workflow(FlakyWorkflow)
    async with running(worker) as client:
        with pytest.raises(WorkflowFailedError):
            await client.new_workflow(FlakyWorkflow).retried("once", 1)
    assert flaky.calls["once"] == 1


async def test_workflow_code_that_raises(make_worker: WorkerFactory) -> None:
    worker = make_worker()
    worker.add_service(FlakyImpl(), interface=Flaky)
    worker.add_workflow(FlakyWorkflow)
    async with running(worker) as client:
        with pytest.raises(WorkflowFailedError) as info:
            await client.new_workflow(FlakyWorkflow).raises("boom")
    # an exception of workflow code itself: a workflow task failure, the original as its cause
    assert isinstance(info.value.cause, WorkflowTaskFailedError)
    original = info.value.cause.cause
    assert isinstance(original, RemoteError)
    assert original.class_name == "ValueError"
    assert original.message == "boom"


async def test_payloads_round_trip_with_their_types(make_worker: WorkerFactory) -> None:
    worker = make_worker()
    worker.add_service(EchoImpl(), interface=Echo)
    worker.add_workflow(EchoWorkflow)
    args = (
        Address(street="Main", zip=75001),
        Parcel(1.5, ["fragile"]),
        Color.BLUE,
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        uuid.uuid4(),
        {"a": 1},
        None,
    )
    async with running(worker) as client:
        result = await client.new_workflow(EchoWorkflow).round_trip(*args)
    assert result == args
    assert isinstance(result[0], Address)
    assert isinstance(result[1], Parcel)


async def test_wrong_payloads_are_refused_with_clear_errors(make_worker: WorkerFactory) -> None:
    worker = make_worker()
    worker.add_service(EchoImpl(), interface=Echo)
    worker.add_workflow(EchoWorkflow)
    async with running(worker) as client:
        wf = client.new_workflow(EchoWorkflow)
        with pytest.raises(
            InvalidPayloadError,
            match=r"workflow EchoWorkflow, method sequence, "
            r"parameter 'n'",
        ):
            await wf.sequence("3")  # type: ignore[arg-type]
        with pytest.raises(InvalidPayloadError, match="missing a required argument"):
            await wf.sequence()  # type: ignore[call-arg]
        with pytest.raises(UnknownMethodError, match="no method 'nope'"):
            wf.nope  # type: ignore[attr-defined]  # noqa: B018
        with pytest.raises(WorkflowFailedError) as info:
            await wf.bad_argument()
        assert isinstance(info.value.cause, WorkflowTaskFailedError)
        refused = info.value.cause.cause
        assert isinstance(refused, RemoteError)
        assert refused.class_name.endswith("InvalidPayloadError")
        assert "service Echo, method count, parameter 'n'" in refused.message
        with pytest.raises(WorkflowFailedError) as info:
            await wf.bad_return()
        assert isinstance(info.value.cause, TaskFailedError)
        assert "return value" in str(info.value.cause.cause)


async def test_parallel_and_sequential_tasks(make_worker: WorkerFactory) -> None:
    worker = make_worker()
    worker.add_service(EchoImpl(), interface=Echo, concurrency=4)
    worker.add_workflow(EchoWorkflow)
    async with running(worker) as client:
        wf = client.new_workflow(EchoWorkflow)
        assert await wf.sequence(20) == list(range(1, 21))
        assert await wf.parallel(30) == list(range(1, 31))


class DuplicatingTransport(InMemoryTransport):
    """Delivers every message twice, as an at-least-once broker may."""

    async def publish(self, topic: str, data: bytes, **kwargs: object) -> None:  # type: ignore[override]
        await super().publish(topic, data, **kwargs)  # type: ignore[arg-type]
        if not topic.startswith("response:"):
            await super().publish(topic, data, **kwargs)  # type: ignore[arg-type]


async def test_messages_delivered_twice_have_no_double_effect(workflow_cache_size: int) -> None:
    from infinitic.worker import InfiniticWorker

    transport, storage = DuplicatingTransport(), InMemoryStorage()
    bank, emails = InMemoryBank({"alice": 1000}), PrintingEmails()
    worker = InfiniticWorker(
        transport=transport, storage=storage, workflow_cache_size=workflow_cache_size
    )
    worker.add_service(bank, interface=BankService, concurrency=5)
    worker.add_service(emails, interface=EmailService, concurrency=5)
    worker.add_workflow(BankWorkflow, concurrency=5)
    echo = EchoImpl()
    worker.add_service(echo, interface=Echo)
    worker.add_workflow(EchoWorkflow)
    async with running(worker) as client:
        results = await asyncio.gather(
            *(
                client.new_workflow(BankWorkflow).wire(f"w{i}", "alice", f"r{i}", 10)
                for i in range(10)
            )
        )
        assert await client.new_workflow(EchoWorkflow).sequence(10) == list(range(1, 11))
        for _ in range(200):
            if transport.idle():
                break
            await asyncio.sleep(0.01)
    assert len(set(results)) == 10
    assert bank.balances["alice"] == 900
    assert all(bank.balances[f"r{i}"] == 10 for i in range(10))
    assert len(storage.key_value) == 0  # every workflow completed and was removed once
    assert transport.dead_letters() == []


async def test_poison_messages_go_to_dead_letters(
    make_worker: WorkerFactory, transport: InMemoryTransport
) -> None:
    bank, emails = InMemoryBank(), PrintingEmails()
    worker = bank_worker(make_worker, bank, emails)
    worker = make_worker(max_redeliveries=2)
    worker.add_service(bank, interface=BankService, concurrency=4)
    worker.add_service(emails, interface=EmailService, concurrency=4)
    worker.add_workflow(BankWorkflow, concurrency=4)
    async with running(worker) as client:
        await transport.publish("workflow-cmd:BankWorkflow", b"\xc1garbage", key="x")
        await transport.publish("task-executor:BankService", b"\x93\x01\x02\x03")
        await transport.publish(
            "workflow-engine:BankWorkflow", b"\x83\xa1v\x01\xa1t\xa4Nope\xa1b\x80", key="y"
        )
        results = await asyncio.gather(
            *(client.new_workflow(BankWorkflow).wire(f"w{i}", "a", "b", 1) for i in range(20))
        )
        assert len(results) == 20
        for _ in range(300):
            if len(transport.dead_letters()) >= 3:
                break
            await asyncio.sleep(0.01)
    letters = {d.original_topic: d for d in transport.dead_letters()}
    assert set(letters) == {
        "workflow-cmd:BankWorkflow",
        "task-executor:BankService",
        "workflow-engine:BankWorkflow",
    }
    assert "not a msgpack value" in letters["workflow-cmd:BankWorkflow"].error
    assert "not an Infinitic message envelope" in letters["task-executor:BankService"].error
    assert "unknown message type 'Nope'" in letters["workflow-engine:BankWorkflow"].error
    assert letters["workflow-cmd:BankWorkflow"].message.redelivery_count == 2
    assert bank.balances == {"a": -20, "b": 20}


@pytest.mark.slow
async def test_a_thousand_concurrent_bank_wires(
    make_worker: WorkerFactory, storage: InMemoryStorage
) -> None:
    n = 1000
    bank = InMemoryBank({f"acc{i}": 100 for i in range(n)})
    emails = PrintingEmails()
    async with running(bank_worker(make_worker, bank, emails, concurrency=50)) as client:
        results = await asyncio.gather(
            *(
                client.new_workflow(BankWorkflow).wire(f"w{i}", f"acc{i}", f"acc{(i + 1) % n}", 7)
                for i in range(n)
            )
        )
    assert len(set(results)) == n
    assert all(r.endswith(f":email-w{i}-0") for i, r in enumerate(results))
    assert sum(bank.balances.values()) == 100 * n
    assert all(v == 100 for v in bank.balances.values())
    assert len(emails.sent) == n
    assert len(storage.key_value) == 0
