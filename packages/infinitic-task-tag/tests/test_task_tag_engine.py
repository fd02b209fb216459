"""The service tag engine on a recording transport: task tags and delegated tasks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import pytest

import infinitic.task_tag
from infinitic.common import FailureInfo, decode_message
from infinitic.common.messages import CommandResult, Message, Requester
from infinitic.common.tag_messages import (
    AddTagToTask,
    CompleteDelegatedTask,
    RemoveTagFromTask,
    SetDelegatedTaskData,
)
from infinitic.storage import InMemoryStorage
from infinitic.task_tag import TaskTagEngine, delegated_key
from infinitic.transport import Consumer, Transport


class Recording(Transport):
    def __init__(self) -> None:
        self.sent: list[tuple[str, Message, str | None]] = []

    async def publish(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None = None,
        deliver_at: float | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self.sent.append((topic, decode_message(data), key))

    async def subscribe(self, *args: object, **kwargs: object) -> Consumer:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class Bank(Protocol):
    async def approve(self, who: str) -> int: ...


REQUESTER = Requester(workflow_name="W", workflow_id="w1", method_run_id="w1", command_id="c1")


def test_public_api() -> None:
    assert sorted(infinitic.task_tag.__all__) == ["DelegatedTask", "TaskTagEngine", "delegated_key"]


@pytest.fixture
def storage() -> InMemoryStorage:
    return InMemoryStorage()


@pytest.fixture
def transport() -> Recording:
    return Recording()


@pytest.fixture
def engine(storage: InMemoryStorage, transport: Recording) -> TaskTagEngine:
    return TaskTagEngine("Bank", transport, storage.key_set, storage.key_value, interface=Bank)


async def delegate(engine: TaskTagEngine) -> None:
    await engine.handle(
        SetDelegatedTaskData(
            service_name="Bank",
            task_id="t1",
            method_name="approve",
            requester=REQUESTER,
            tags=["vip"],
            meta={"k": b"v"},
        )
    )


async def test_tags_added_and_removed(engine: TaskTagEngine, storage: InMemoryStorage) -> None:
    await engine.handle(AddTagToTask(service_name="Bank", tag="a", task_id="t1"))
    await engine.handle(AddTagToTask(service_name="Bank", tag="a", task_id="t1"))
    assert (await storage.key_set.page("task-tag:Bank:a")).members == ["t1"]
    await engine.handle(RemoveTagFromTask(service_name="Bank", tag="a", task_id="t1"))
    await engine.handle(RemoveTagFromTask(service_name="Bank", tag="a", task_id="t1"))
    assert await storage.key_set.count("task-tag:Bank:a") == 0


async def test_completion_goes_to_the_requester_once(
    engine: TaskTagEngine, storage: InMemoryStorage, transport: Recording
) -> None:
    await delegate(engine)
    assert await storage.key_set.count("task-tag:Bank:vip") == 1
    complete = CompleteDelegatedTask(service_name="Bank", task_id="t1", value=3)
    await engine.handle(complete)
    ((to, result, _),) = transport.sent
    assert to == "workflow-engine:W"  # straight to the requesting workflow's state engine
    assert isinstance(result, CommandResult)
    assert (result.status, result.value, result.workflow_id, result.command_id) == (
        "completed",
        3,
        REQUESTER.workflow_id,
        REQUESTER.command_id,
    )
    assert await storage.key_set.count("task-tag:Bank:vip") == 0
    assert await storage.key_value.get(delegated_key("Bank", "t1")) is None
    await engine.handle(complete)  # again: nothing
    await engine.handle(CompleteDelegatedTask(service_name="Bank", task_id="nope", value=1))
    assert len(transport.sent) == 1


async def test_a_value_of_the_wrong_type_is_refused(
    engine: TaskTagEngine, storage: InMemoryStorage, transport: Recording
) -> None:
    await delegate(engine)
    await engine.handle(CompleteDelegatedTask(service_name="Bank", task_id="t1", value="x"))
    assert transport.sent == []
    assert await storage.key_value.get(delegated_key("Bank", "t1")) is not None


async def test_a_failure_from_the_executor(engine: TaskTagEngine, transport: Recording) -> None:
    await delegate(engine)
    failure = FailureInfo(kind="remote", class_name="ValueError", message="boom")
    await engine.handle(
        CompleteDelegatedTask(service_name="Bank", task_id="t1", status="failed", failure=failure)
    )
    ((_, result, _),) = transport.sent
    assert isinstance(result, CommandResult)
    assert result.status == "failed"
    assert result.failure is not None
    assert (result.failure.kind, result.failure.method_name, result.failure.cause) == (
        "task_failed",
        "approve",
        failure,
    )
