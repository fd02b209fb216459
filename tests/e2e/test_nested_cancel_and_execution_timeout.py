"""A child canceled under its parent, and execution timeouts on implementations."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import (
    RemoteError,
    TaskFailedError,
    WorkflowCanceledError,
    WorkflowFailedError,
)
from infinitic.services import timeout
from infinitic.storage import InMemoryStorage
from infinitic.workflows import Workflow, new_service

from .conftest import WorkerFactory
from .language import Parent, Timers, Tools, ToolsImpl


async def test_a_canceled_child_fails_its_parent_with_a_nested_error(
    make_worker: WorkerFactory, storage: InMemoryStorage
) -> None:
    worker = make_worker()
    worker.add_service(ToolsImpl(), interface=Tools)
    worker.add_workflow(Parent)
    worker.add_workflow(Timers)
    async with worker, InfiniticClient(transport=worker.transport, storage=storage) as client:
        parent = await client.dispatch(client.new_workflow(Parent).wait_for_child)
        stub = client.get_workflow_by_id(Parent, parent.id)
        child_id = None
        for _ in range(500):
            state = await client.get_workflow_state(stub)
            children = [
                c for c in (state or {}).get("commands", {}).values() if c["kind"] == "workflow"
            ]
            if children and len(storage.key_value.keys("workflow-state:")) == 2:
                child_id = children[0]["command_id"]
                break
            await asyncio.sleep(0.01)
        assert child_id is not None
        await client.cancel(client.get_workflow_by_id(Timers, child_id))
        with pytest.raises(WorkflowFailedError) as info:
            await parent
    cause = info.value.cause
    assert isinstance(cause, WorkflowCanceledError)
    assert cause.workflow_name == "Timers"
    assert cause.workflow_id == child_id


class Slow(Protocol):
    async def crawl(self, seconds: float) -> str: ...


class SlowImpl:
    def __init__(self) -> None:
        self.attempts = 0

    @timeout(seconds=0.1)  # on the implementation: bounds each attempt
    async def crawl(self, seconds: float) -> str:
        self.attempts += 1
        await asyncio.sleep(seconds)
        return "arrived"


class Crawler(Workflow):
    slow = new_service(Slow)

    async def run(self, seconds: float) -> str:
        return await self.slow.crawl(seconds)


async def test_execution_timeout_on_the_implementation(make_worker: WorkerFactory) -> None:
    impl = SlowImpl()
    worker = make_worker()
    worker.add_service(impl, interface=Slow)
    worker.add_workflow(Crawler)
    async with worker, InfiniticClient(transport=worker.transport) as client:
        assert await client.new_workflow(Crawler).run(0.0) == "arrived"
        with pytest.raises(WorkflowFailedError) as info:
            await client.new_workflow(Crawler).run(5.0)
    assert isinstance(info.value.cause, TaskFailedError)
    assert isinstance(info.value.cause.cause, RemoteError)
    assert info.value.cause.cause.class_name.endswith("TaskTimeoutError")
    assert "execution timeout of 0.1s" in info.value.cause.cause.message
