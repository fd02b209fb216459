"""A dead-lettered message fails whatever waits for it, with the topic and the reason, instead
of leaving it waiting forever (as Infinitic fails a task sent to its dead-letter queue)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import (
    MessageDeadLetteredError,
    TaskFailedError,
    WorkflowFailedError,
)
from infinitic.storage import (
    InMemoryKeySetStorage,
    InMemoryKeyValueStorage,
    InMemoryStorage,
    Storage,
)
from infinitic.transport import (
    ConsumerSettings,
    InMemoryTransport,
    MessageHandler,
    TransportMessage,
)
from infinitic.worker import InfiniticWorker
from infinitic.workflows import Workflow, new_service


class Fragile(Protocol):
    async def run(self, n: int) -> int: ...


class FragileImpl:
    async def run(self, n: int) -> int:
        return n


class CallsFragile(Workflow):
    fragile = new_service(Fragile)

    async def call(self, n: int) -> str:
        try:
            return str(await self.fragile.run(n))
        except TaskFailedError as e:
            return f"caught {type(e.cause).__name__}: {e.cause}"

    async def plain(self) -> int:
        return 1


class CrashingExecutors(InMemoryTransport):
    """The executors of Fragile crash on every message (as a process that dies on it would)."""

    async def subscribe(
        self,
        topic: str,
        subscription: str,
        handler: MessageHandler,
        settings: ConsumerSettings | None = None,
    ) -> Any:
        if topic == "task-executor:Fragile":

            async def crash(message: TransportMessage) -> None:
                raise RuntimeError("the executor process died")

            handler = crash
        return await super().subscribe(topic, subscription, handler, settings)


class RefusingStorage(InMemoryKeyValueStorage):
    """Once ``refuse`` is set, refuses new keys (as a backend refusing a value would)."""

    refuse = False

    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        if self.refuse and await self.get(key) is None:
            raise ValueError(f"value of {len(value)} bytes refused for {key}")
        return await super().put(key, value, expected_version=expected_version)


def _worker(transport: InMemoryTransport, storage: Storage) -> InfiniticWorker:
    worker = InfiniticWorker(
        transport=transport, storage=storage, max_redeliveries=1, redelivery_delay=0.01
    )
    worker.add_service(FragileImpl(), interface=Fragile, name="Fragile")
    worker.add_workflow(CallsFragile)
    return worker


async def test_a_dead_lettered_task_fails_the_workflow_task_that_waits_for_it() -> None:
    transport = CrashingExecutors()
    async with (
        _worker(transport, InMemoryStorage()),
        InfiniticClient(transport=transport) as client,
    ):
        result = await asyncio.wait_for(client.new_workflow(CallsFragile).call(3), 10)
    assert result.startswith("caught MessageDeadLetteredError: a message on task-executor:Fragile")
    assert "the executor process died" in result
    assert [d.original_topic for d in transport.dead_letters()] == ["task-executor:Fragile"]


async def test_a_dead_lettered_start_fails_the_client_waiting_for_it() -> None:
    transport = InMemoryTransport()
    kv = RefusingStorage()
    async with (
        _worker(transport, Storage(kv, InMemoryStorage().key_set)),
        InfiniticClient(transport=transport) as client,
    ):
        assert await client.new_workflow(CallsFragile).call(1) == "1"
        kv.refuse = True
        # (a workflow that ends in its first workflow task is never stored: it needs a task)
        with pytest.raises(WorkflowFailedError) as raised:
            await asyncio.wait_for(client.new_workflow(CallsFragile).call(2), 10)
        cause = raised.value.cause
        assert isinstance(cause, MessageDeadLetteredError)
        assert "refused" in cause.reason


class RefusingTags(InMemoryKeySetStorage):
    """Refuses one tag (as a backend refusing a too long member would)."""

    async def add(self, key: str, member: str) -> None:
        if key.endswith(":refused"):
            raise ValueError(f"tag key {key} refused")
        await super().add(key, member)


async def test_a_start_whose_tag_is_refused_fails_the_client_waiting_for_it() -> None:
    transport = InMemoryTransport()
    storage = Storage(InMemoryKeyValueStorage(), RefusingTags())
    async with _worker(transport, storage), InfiniticClient(transport=transport) as client:
        assert await client.new_workflow(CallsFragile, tags={"fine"}).plain() == 1
        with pytest.raises(WorkflowFailedError) as raised:
            await asyncio.wait_for(client.new_workflow(CallsFragile, tags={"refused"}).plain(), 10)
    cause = raised.value.cause
    assert isinstance(cause, MessageDeadLetteredError)
    assert cause.topic == "workflow-tag:CallsFragile"
    assert "refused" in cause.reason
