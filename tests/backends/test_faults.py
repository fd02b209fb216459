"""Faults on real backends: storage outages while wires run, corrupted stored states."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import pytest

from infinitic.client import InfiniticClient
from infinitic.common import decode_message
from infinitic.common.messages import MethodOutcome
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker
from infinitic.workflow_engine import state_key
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow

from .scenarios import Steps, StepsImpl, StepsWorkflow
from .support import Backend, kill_postgres_backends, kill_redis_clients, open_backend


class CountingTransport(InMemoryTransport):
    """Counts the results published to clients, per workflow id."""

    def __init__(self) -> None:
        super().__init__()
        self.results: Counter[str] = Counter()

    async def publish(self, topic: str, data: bytes, **kwargs: Any) -> None:
        if topic.startswith("response:"):
            message = decode_message(data)
            if isinstance(message, MethodOutcome):
                self.results[message.workflow_id] += 1
        await super().publish(topic, data, **kwargs)


async def _kill(backend: Backend) -> int:
    if backend.name == "redis":
        return await kill_redis_clients(backend.token)
    return await kill_postgres_backends(backend.token)


@pytest.fixture
async def outage_backend(request: pytest.FixtureRequest) -> Any:
    backend = await open_backend(str(request.param))
    try:
        yield backend
    finally:
        await backend.close()


@pytest.mark.parametrize(
    "outage_backend",
    [
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
    indirect=True,
)
@pytest.mark.timeout(180)
async def test_storage_outage_while_wires_run(outage_backend: Backend) -> None:
    n = 100
    transport = CountingTransport()
    bank = InMemoryBank({f"acc{i}": 100 for i in range(n)})
    emails = PrintingEmails()
    worker = InfiniticWorker(transport=transport, storage=outage_backend.storage)
    worker.add_service(bank, interface=BankService, concurrency=20)
    worker.add_service(emails, interface=EmailService, concurrency=20)
    worker.add_workflow(BankWorkflow, concurrency=20)
    killed = 0
    async with worker, InfiniticClient(transport=transport) as client:
        wires = [
            asyncio.ensure_future(
                client.new_workflow(BankWorkflow).wire(f"w{i}", f"acc{i}", f"acc{(i + 1) % n}", 7)
            )
            for i in range(n)
        ]
        for _ in range(8):  # connections die again and again while the wires run
            await asyncio.sleep(0.1)
            killed += await _kill(outage_backend)
        results = await asyncio.wait_for(asyncio.gather(*wires), 120)
    assert killed > 0, "the outage did not hit any connection"
    assert len(set(results)) == n
    assert all(r.endswith(f":email-w{i}-0") for i, r in enumerate(results))
    assert all(v == 100 for v in bank.balances.values())  # each wire moved money once
    assert len(emails.sent) == n
    assert len(transport.results) == n
    assert set(transport.results.values()) == {1}  # each result reached the client once
    assert transport.dead_letters() == []


@pytest.mark.parametrize(
    "outage_backend",
    [
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
    indirect=True,
)
async def test_corrupted_state_goes_to_dead_letters(outage_backend: Backend) -> None:
    transport = InMemoryTransport()
    worker = InfiniticWorker(
        transport=transport,
        storage=outage_backend.storage,
        max_redeliveries=2,
        redelivery_delay=0.05,
    )
    worker.add_service(StepsImpl(), interface=Steps, concurrency=4)
    worker.add_workflow(StepsWorkflow, concurrency=4)
    async with worker, InfiniticClient(transport=transport) as client:
        naps = [
            await client.dispatch(client.new_workflow(StepsWorkflow).nap, 1.0, i) for i in range(5)
        ]
        victim = naps[2]
        key = state_key("StepsWorkflow", victim.id)
        for _ in range(200):  # wait until its state is stored, then corrupt it
            if await outage_backend.raw.key_value.get(key) is not None:
                break
            await asyncio.sleep(0.01)
        await outage_backend.raw.key_value.put(key, b"\xc1 not a workflow state")
        others = [d for d in naps if d is not victim]
        assert await asyncio.gather(*others) == [0, 1, 3, 4]
        for _ in range(300):
            if transport.dead_letters():
                break
            await asyncio.sleep(0.01)
        # the worker keeps processing other workflows
        assert await client.new_workflow(StepsWorkflow).sequence(3) == [1, 3, 6]
        letters = transport.dead_letters()
        # Every message of the victim's state engine, depending on when the state was
        # corrupted: a workflow task's outcome (then the failure sent to tell the instance's
        # waiters, which cannot be read either), the timer's result, or the start itself when
        # the state was corrupted between its first store and the end of the cycle creating it
        # (the cycle's compare-and-set fails, and it reads the state again).
        assert letters
        for letter in letters:
            assert letter.original_topic in (
                "workflow-engine:StepsWorkflow",
                "workflow-cmd:StepsWorkflow",
            )
            assert "CorruptedValueError" in letter.error
            assert key in letter.error
            assert letter.message.redelivery_count == 2
            m = decode_message(letter.message.data)
            assert m.workflow_id == victim.id  # type: ignore[attr-defined]
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(victim.result()), 0.1)
