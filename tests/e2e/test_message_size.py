"""Messages over the transport's size limit are refused where they are made, naming what they
carry, its size and the limit; nothing is sent and nothing waits forever."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

from infinitic.exceptions import (
    MessageDeadLetteredError,
    MessageTooLargeError,
    TaskFailedError,
    WorkflowFailedError,
)
from infinitic.transport import InMemoryTransport
from infinitic.workflows import Workflow, new_service

from .conftest import WorkerFactory, running

LIMIT = 20_000
BIG = "x" * (2 * LIMIT)


@pytest.fixture
def transport() -> InMemoryTransport:
    return InMemoryTransport(max_message_bytes=LIMIT)


class Echo(Protocol):
    async def echo(self, text: str) -> str: ...

    async def inflate(self, n: int) -> str: ...


class EchoImpl:
    async def echo(self, text: str) -> str:
        return text

    async def inflate(self, n: int) -> str:
        return "y" * n


class Sizes(Workflow):
    echo = new_service(Echo)

    async def take(self, text: str) -> int:
        return len(text)

    async def result_too_large(self) -> str:
        try:
            return await self.echo.inflate(2 * LIMIT)
        except TaskFailedError as e:
            return f"caught: {e.cause}"

    async def argument_too_large(self) -> str:
        return await self.echo.echo(BIG)


def _worker(make_worker: WorkerFactory) -> object:
    worker = make_worker(max_redeliveries=1)
    worker.add_service(EchoImpl(), interface=Echo, name="Echo")
    worker.add_workflow(Sizes)
    return worker


async def test_a_client_call_too_large_is_refused_before_sending(
    make_worker: WorkerFactory, transport: InMemoryTransport
) -> None:
    async with running(_worker(make_worker)) as client:  # type: ignore[arg-type]
        assert await client.new_workflow(Sizes).take("small") == 5
        sent = transport.published_count
        with pytest.raises(MessageTooLargeError) as raised:
            await client.new_workflow(Sizes).take(BIG)
        assert transport.published_count == sent
    error = raised.value
    assert "Sizes.take" in str(error)
    assert f"{LIMIT:,}" in str(error)
    assert error.size > LIMIT
    assert error.limit == LIMIT


async def test_a_task_result_too_large_fails_the_task(make_worker: WorkerFactory) -> None:
    async with running(_worker(make_worker)) as client:  # type: ignore[arg-type]
        result = await asyncio.wait_for(client.new_workflow(Sizes).result_too_large(), 10)
    assert result.startswith("caught:")
    assert "the result of task Echo.inflate" in result
    assert "over the limit" in result


async def test_a_task_argument_too_large_fails_the_workflow_that_sends_it(
    make_worker: WorkerFactory,
) -> None:
    async with running(_worker(make_worker)) as client:  # type: ignore[arg-type]
        with pytest.raises(WorkflowFailedError) as raised:
            await asyncio.wait_for(client.new_workflow(Sizes).argument_too_large(), 10)
    # The engine cannot send it: the message it handles is dead-lettered with the reason,
    # which fails the workflow (through its workflow task when the engine runs that inline).
    chain, error = [], raised.value.cause
    while error is not None:
        chain.append(error)
        error = getattr(error, "cause", None)
    reasons = [e.reason for e in chain if isinstance(e, MessageDeadLetteredError)]
    text = reasons[0] if reasons else str(chain[-1])
    assert "dead-lettered" in str(chain[0])
    # The task message itself when the engine runs workflow tasks inline, else the workflow
    # task's outcome that carries it.
    assert "ExecuteTask for Echo.echo" in text or "WorkflowTaskCompleted for Sizes" in text
    assert "over the limit" in text
