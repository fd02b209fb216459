"""LocalResults: what a worker's service executors send to its own state engines is handled by
them directly; what they cannot take goes through the broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from infinitic.transport import InMemoryTransport, RetryLater, TransportMessage
from infinitic.worker._local_results import LocalResults


class Recording(InMemoryTransport):
    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[str, bytes, dict[str, Any]]] = []

    async def publish(self, topic: str, data: bytes, **kwargs: Any) -> None:
        self.published.append((topic, data, kwargs))


async def test_a_routed_message_is_handled_here_and_not_published() -> None:
    inner = Recording()
    local = LocalResults(inner)
    handled: list[TransportMessage] = []

    async def handler(message: TransportMessage) -> None:
        handled.append(message)

    local.route("workflow-engine:W", handler)
    await local.publish("workflow-engine:W", b"result", key="wf", properties={"p": "1"})
    # returned once handled: nothing was left to do in the background
    assert [(m.topic, m.data, m.key, dict(m.properties)) for m in handled] == [
        ("workflow-engine:W", b"result", "wf", {"p": "1"})
    ]
    await local.publish("task-executor:S", b"task", key="t")  # not routed
    await local.publish("workflow-engine:W", b"later", key="wf", deliver_at=local.now() + 60)
    assert len(handled) == 1
    assert [(t, d) for t, d, _ in inner.published] == [
        ("task-executor:S", b"task"),
        ("workflow-engine:W", b"later"),
    ]
    assert (local.handled, local.published) == (1, 0)


async def test_what_the_handler_does_not_take_is_published() -> None:
    inner = Recording()
    local = LocalResults(inner)

    async def handler(message: TransportMessage) -> None:
        if message.data == b"early":
            raise RetryLater(0.01, "came before its state")
        raise RuntimeError("the storage is down")

    local.route("workflow-engine:W", handler)
    await local.publish("workflow-engine:W", b"early", key="wf")
    await local.publish("workflow-engine:W", b"fails", key="wf")
    assert [(t, d, k["key"]) for t, d, k in inner.published] == [
        ("workflow-engine:W", b"early", "wf"),
        ("workflow-engine:W", b"fails", "wf"),
    ]
    assert (local.handled, local.published) == (0, 2)


async def test_a_cancelled_handling_is_not_published_and_once_stopped_all_is() -> None:
    inner = Recording()
    local = LocalResults(inner)
    started = asyncio.Event()

    async def handler(message: TransportMessage) -> None:
        started.set()
        await asyncio.sleep(60)

    local.route("workflow-engine:W", handler)
    # An abandoned task handling (the worker stops): nothing published, the task comes again.
    publishing = asyncio.create_task(local.publish("workflow-engine:W", b"one"))
    await started.wait()
    publishing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await publishing
    assert inner.published == []
    await local.close()  # the worker closes: what still finishes goes to the broker
    await local.publish("workflow-engine:W", b"two")
    assert [d for _, d, _ in inner.published] == [b"two"]


async def test_a_worker_hands_its_results_to_its_state_engine_and_each_applies_once() -> None:
    from infinitic.client import InfiniticClient
    from infinitic.storage import InMemoryStorage
    from infinitic.worker import InfiniticWorker
    from infinitic_examples.bank_wire.services import (
        BankService,
        EmailService,
        InMemoryBank,
        PrintingEmails,
    )
    from infinitic_examples.bank_wire.workflows import BankWorkflow

    transport = InMemoryTransport()
    bank = InMemoryBank({f"a{i}": 100 for i in range(11)})
    worker = InfiniticWorker(transport=transport, storage=InMemoryStorage(), local_results=True)
    worker.add_service(bank, interface=BankService)
    worker.add_service(PrintingEmails(), interface=EmailService)
    worker.add_workflow(BankWorkflow)
    async with worker, InfiniticClient(transport=transport) as client:
        results = await asyncio.gather(
            *(
                client.new_workflow(BankWorkflow).wire(f"w{i}", f"a{i}", f"a{i + 1}", 1)
                for i in range(10)
            )
        )
    assert all(r.endswith(f":email-w{i}-0") for i, r in enumerate(results))
    local = worker._local_results
    assert local is not None
    assert local.handled + local.published == 30  # three results per wire
    assert local.handled > 0
    # every wire went through (a result delivered twice to its workflow would fail it)
    assert bank.balances == {"a0": 99, **{f"a{i}": 100 for i in range(1, 10)}, "a10": 101}


async def test_local_results_are_off_by_default_on_the_in_memory_transport() -> None:
    from infinitic.storage import InMemoryStorage
    from infinitic.worker import InfiniticWorker

    worker = InfiniticWorker(transport=InMemoryTransport(), storage=InMemoryStorage())
    assert worker._local_results is None


def test_a_nested_handling_leaves_the_outer_message_the_log_context() -> None:
    from infinitic.worker._log_context import _current, enter_handling, nested_handling

    outer = enter_handling("task-executor:S")
    with nested_handling():
        enter_handling("workflow-engine:W")
        assert _current.get() is not outer
    assert _current.get() is outer


async def test_a_handling_past_its_time_is_cancelled_and_the_message_published() -> None:
    inner = Recording()
    local = LocalResults(inner, seconds=0.05)
    cancelled = asyncio.Event()

    async def handler(message: TransportMessage) -> None:  # a state engine whose storage is down
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    local.route("workflow-engine:W", handler)
    await asyncio.wait_for(local.publish("workflow-engine:W", b"result", key="wf"), 5)
    assert cancelled.is_set()
    assert [(t, d) for t, d, _ in inner.published] == [("workflow-engine:W", b"result")]
    assert (local.handled, local.published) == (0, 1)


def test_the_configuration_turns_local_results_on_or_off() -> None:
    from infinitic.worker import InfiniticWorker

    def built(**keys: object) -> InfiniticWorker:
        config = {"transport": {"inMemory": {}}, "storage": {"inMemory": {}}, **keys}
        return InfiniticWorker.from_config(config, environ={})

    assert built()._local_results is None  # in memory: nothing to save
    assert built(localResults=True)._local_results is not None
    assert built(local_results=False)._local_results is None
