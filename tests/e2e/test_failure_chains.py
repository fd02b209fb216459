"""Whole failure chains, as in Infinitic: a parent's client sees the parent's failure caused by
the child's, caused by the task's; an exception raised by workflow code itself reaches callers
as WorkflowTaskFailedError with the original as its cause; a task failure keeps the failures of
its earlier attempts (``previous``)."""

from __future__ import annotations

from collections import Counter
from typing import Protocol

import pytest

from infinitic.exceptions import (
    InfiniticError,
    RemoteError,
    TaskFailedError,
    WorkflowFailedError,
    WorkflowTaskFailedError,
)
from infinitic.services import ExponentialBackoff, retry
from infinitic.worker import InfiniticWorker
from infinitic.workflows import Workflow, new_service, new_workflow

from .conftest import WorkerFactory, running


class Flaky(Protocol):
    async def boom(self, key: str) -> str: ...


@retry(ExponentialBackoff(minimum_seconds=0.01, maximum_seconds=0.01, maximum_retries=2))
class FlakyImpl:
    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()

    async def boom(self, key: str) -> str:
        self.attempts[key] += 1
        raise ValueError(f"{key} attempt {self.attempts[key]}")


class Child(Workflow):
    flaky = new_service(Flaky)

    async def run(self, key: str) -> str:
        return await self.flaky.boom(key)

    async def raises(self) -> str:
        raise KeyError("no such account")


class Parent(Workflow):
    flaky = new_service(Flaky)

    async def run(self, key: str) -> str:
        return await new_workflow(Child).run(key)

    async def child_raises(self) -> str:
        return await new_workflow(Child).raises()

    async def attempts_seen(self, key: str) -> list[str]:
        try:
            await self.flaky.boom(key)
        except TaskFailedError as e:
            return _messages(e.cause)
        return []


def _messages(error: InfiniticError | None) -> list[str]:
    """The messages of an attempt failure and of the attempts before it, last first."""
    out = []
    while error is not None:
        assert isinstance(error, RemoteError)
        out.append(error.message)
        error = error.previous
    return out


def _worker(make_worker: WorkerFactory) -> InfiniticWorker:
    worker = make_worker()
    worker.add_service(FlakyImpl(), interface=Flaky, name="Flaky")
    worker.add_workflow(Parent)
    worker.add_workflow(Child)
    return worker


async def test_a_parent_failure_holds_the_child_failure_and_the_task_failure(
    make_worker: WorkerFactory,
) -> None:
    async with running(_worker(make_worker)) as client:
        with pytest.raises(WorkflowFailedError) as raised:
            await client.new_workflow(Parent).run("wire")
    parent = raised.value
    assert (parent.workflow_name, parent.method_name) == ("Parent", "run")
    child = parent.cause
    assert isinstance(child, WorkflowFailedError)
    assert (child.workflow_name, child.method_name) == ("Child", "run")
    assert child.workflow_id != parent.workflow_id
    assert parent.__cause__ is child
    task = child.cause
    assert isinstance(task, TaskFailedError)
    assert (task.service_name, task.method_name) == ("Flaky", "boom")
    # the last attempt's failure, then each attempt before it
    assert _messages(task.cause) == ["wire attempt 3", "wire attempt 2", "wire attempt 1"]
    assert isinstance(task.cause, RemoteError)
    assert task.cause.class_name == "ValueError"


async def test_an_exception_of_workflow_code_is_a_workflow_task_failure(
    make_worker: WorkerFactory,
) -> None:
    async with running(_worker(make_worker)) as client:
        with pytest.raises(WorkflowFailedError) as raised:
            await client.new_workflow(Child).raises()
        task = raised.value.cause
        assert isinstance(task, WorkflowTaskFailedError)
        assert (task.workflow_name, task.workflow_id) == ("Child", raised.value.workflow_id)
        original = task.cause
        assert isinstance(original, RemoteError)
        assert (original.class_name, original.message) == ("KeyError", "'no such account'")

        # one level deeper: a parent awaiting that child
        with pytest.raises(WorkflowFailedError) as raised:
            await client.new_workflow(Parent).child_raises()
        child = raised.value.cause
        assert isinstance(child, WorkflowFailedError)
        assert child.workflow_name == "Child"
        assert isinstance(child.cause, WorkflowTaskFailedError)
        assert isinstance(child.cause.cause, RemoteError)
        assert child.cause.cause.class_name == "KeyError"


async def test_workflow_code_sees_the_failures_of_earlier_attempts(
    make_worker: WorkerFactory,
) -> None:
    async with running(_worker(make_worker)) as client:
        seen = await client.new_workflow(Parent).attempts_seen("debit")
    assert seen == ["debit attempt 3", "debit attempt 2", "debit attempt 1"]
