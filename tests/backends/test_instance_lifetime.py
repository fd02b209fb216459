"""An instance lives until everything it started has ended; Deferreds stay in workflow code
(issue 12, items 7 and 8) on real backends. Public API only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import WorkflowFailedError
from infinitic.workflow_engine import state_key

from .conftest import Stack
from .lifetime import Notes, NotesImpl, SelfCaller


async def _until(predicate: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_instance_lifetime_and_deferred_escapes(stack: Stack) -> None:
    gate = NotesImpl()
    worker = stack.worker()
    worker.add_service(gate, interface=Notes, concurrency=8)
    worker.add_workflow(SelfCaller, concurrency=8)
    async with worker, InfiniticClient(transport=stack.transport) as client:
        try:
            # a method dispatched on the own instance is never lost, whatever comes first
            ids = []
            for i in range(10):
                stub = client.new_workflow(SelfCaller)
                deferred = await client.dispatch(stub.call_myself, f"m{i}")
                ids.append(deferred.id)

            async def all_noted() -> bool:
                return len(gate.notes) == 10

            await _until(all_noted)
            assert sorted(gate.notes) == sorted(f"m{i}:initial" for i in range(10))

            # a fire-and-forget task keeps the instance and its properties until it ends
            started = await client.dispatch(client.new_workflow(SelfCaller).fire_task, "kept")
            assert await started == "started"
            running = client.get_workflow_by_id(SelfCaller, started.id)
            assert await asyncio.wait_for(running.read_label(), 20) == "kept"
            key = state_key("SelfCaller", started.id)
            assert await stack.storage.key_value.get(key) is not None
            gate.release.set()

            async def gone() -> bool:
                keys = [key, *(state_key("SelfCaller", i) for i in ids)]
                return all([await stack.storage.key_value.get(k) is None for k in keys])

            await _until(gone)

            # a Deferred kept in a property fails the workflow task, naming Deferred
            with pytest.raises(WorkflowFailedError, match="Deferred"):
                await asyncio.wait_for(client.new_workflow(SelfCaller).keep_deferred(), 20)
        finally:
            gate.release.set()
