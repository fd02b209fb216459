"""A listener receives the exact events of a bank wire and of a task failing then retried, on
the in-memory transport and on pulsar-lite (issue 13)."""

from __future__ import annotations

from typing import Protocol

import pytest

from infinitic.client import InfiniticClient
from infinitic.transport import Transport
from infinitic.workflows import Workflow, new_service
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow

from .support import Collector, Flaky, kinds, of_tasks, of_workflow, transport, worker

__all__ = ["transport"]  # the fixture

# One workflow task run in the state engine's cycle: dispatched, executed, completed.
INLINE_STEP = [
    "stateEngine:executorDispatched",
    "executor:dispatch",
    "executor:started",
    "executor:completed",
    "stateEngine:executorCompleted",
]


class Payments(Protocol):
    async def charge(self, key: str) -> str: ...


class PaymentWorkflow(Workflow):
    payments = new_service(Payments)

    async def pay(self, key: str) -> str:
        return await self.payments.charge(key)


def _done(workflow_id: str, tasks: int):  # type: ignore[no-untyped-def]
    def done(events: list) -> bool:  # type: ignore[type-arg]
        ended = any(
            e.get_type() == "infinitic.workflow.completed" and e.get_subject() == workflow_id
            for e in events
        )
        finished = [
            e
            for e in events
            if e.get_type() == "infinitic.task.completed" and "/services/" in e.get_source()
        ]
        return ended and len(finished) >= tasks

    return done


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "through-the-broker"])
async def test_a_bank_wire_gives_its_exact_events(transport: Transport, inline: bool) -> None:
    """With workflow tasks run by the state engine or sent to the executor through the broker
    (its events then come from workflow-executor-events), the same events in the same order."""
    collector = Collector()
    w = worker(transport, name="bank-worker", inline_workflow_tasks=inline)
    w.add_service(InMemoryBank({"a": 100, "b": 0}), interface=BankService)
    w.add_service(PrintingEmails(), interface=EmailService)
    w.add_workflow(BankWorkflow)
    w.add_event_listener(collector, batch={"max_messages": 10, "max_seconds": 0.05})
    async with w, InfiniticClient(transport=transport) as client:
        wf = client.new_workflow(BankWorkflow)
        deferred = await client.dispatch(wf.wire, "wire-1", "a", "b", 10)
        await deferred.result()
        wid = deferred.id
        events = await collector.wait_for(_done(wid, 3))

    flow = of_workflow(events, wid)
    assert kinds(flow) == [
        "stateEngine:dispatch",
        *INLINE_STEP,
        "stateEngine:taskDispatched",
        "stateEngine:taskCompleted",
        *INLINE_STEP,
        "stateEngine:taskDispatched",
        "stateEngine:taskCompleted",
        *INLINE_STEP,
        "stateEngine:taskDispatched",
        "stateEngine:taskCompleted",
        *INLINE_STEP,
        "stateEngine:methodCompleted",
        "stateEngine:completed",
    ]
    dispatched = [
        e.get_data()["taskDispatched"]["taskName"] for e in flow if "taskDis" in e.get_type()
    ]  # type: ignore[index]
    assert dispatched == ["withdraw", "deposit", "send"]
    tasks = of_tasks(events, wid)
    assert sorted(tasks) == ["deposit", "send", "withdraw"]
    for name, task_events in tasks.items():
        assert kinds(task_events) == [
            "executor:dispatch",
            "executor:started",
            "executor:completed",
        ], name
    sources = {
        e.get_source().removeprefix(e.get_source().split("/workflows/")[0].split("/services/")[0])
        for e in events
    }
    assert "/workflows/stateEngine/BankWorkflow" in sources
    assert "/workflows/executor/BankWorkflow" in sources
    assert {"/services/executor/BankService", "/services/executor/EmailService"} <= sources
    first = flow[0]
    assert first.get_subject() == wid
    assert first.get_data()["workerName"] == "bank-worker"  # type: ignore[index]
    assert first.get_data()["infiniticVersion"]  # type: ignore[index]
    assert first.get_attributes()["datacontenttype"] == "application/json"
    ids = [e.get_id() for e in events]
    assert len(ids) == len(set(ids))
    completed = next(e for e in flow if e.get_type().endswith("methodCompleted"))
    assert completed.get_data()["methodCompleted"]["output"] == await deferred.result()  # type: ignore[index]


async def test_a_failing_then_retried_task_gives_its_exact_events(transport: Transport) -> None:
    collector = Collector()
    flaky = Flaky()
    w = worker(transport)
    w.add_service(flaky, interface=Payments, name="Payments")
    w.add_workflow(PaymentWorkflow)
    w.add_event_listener(collector, batch={"max_messages": 10, "max_seconds": 0.05})
    async with w, InfiniticClient(transport=transport) as client:
        deferred = await client.dispatch(client.new_workflow(PaymentWorkflow).pay, "k1")
        assert await deferred.result() == "charged k1"
        wid = deferred.id
        events = await collector.wait_for(_done(wid, 1))

    assert kinds(of_workflow(events, wid)) == [
        "stateEngine:dispatch",
        *INLINE_STEP,
        "stateEngine:taskDispatched",
        "stateEngine:taskCompleted",
        *INLINE_STEP,
        "stateEngine:methodCompleted",
        "stateEngine:completed",
    ]
    charge = sorted(of_tasks(events, wid)["charge"], key=lambda e: e.get_time())  # type: ignore[arg-type,return-value]
    assert kinds(charge) == [
        "executor:dispatch",
        "executor:started",
        "executor:retryScheduled",
        "executor:dispatch",
        "executor:started",
        "executor:completed",
    ]
    retried = charge[2].get_data()
    assert retried["taskRetryIndex"] == 0  # type: ignore[index]
    assert retried["error"]["message"] == "first attempt of k1 fails"  # type: ignore[index]
    assert retried["taskRetryDelay"] > 0  # type: ignore[index]
    assert charge[5].get_data()["taskRetryIndex"] == 1  # type: ignore[index]
    assert charge[5].get_data()["result"] == "charged k1"  # type: ignore[index]
