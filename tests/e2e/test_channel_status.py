"""Channels and combinators have a status, as in Infinitic: a receive is completed while a
signal waits to be awaited and ongoing again once an await took it ("falsetruefalse"); a
receive with a limit gives its last signal again to awaits past the limit ("abb"); the results
of ``all_of`` and ``any_of`` are Deferreds with a status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import TaskFailedError
from infinitic.services import NoRetry, retry
from infinitic.worker import InfiniticWorker
from infinitic.workflows import Channel, Workflow, all_of, any_of, new_service, timer

from .conftest import WorkerFactory, running


class Refuses(Protocol):
    async def refuse(self) -> str: ...


@retry(NoRetry())
class RefusesImpl:
    async def refuse(self) -> str:
        raise ValueError("refused")


def _flag(value: bool) -> str:
    return str(value).lower()


class Statuses(Workflow):
    letters = Channel[str]()
    refuses = new_service(Refuses)

    async def is_completed(self) -> str:
        received = self.letters.receive()
        out = _flag(received.is_completed())
        await timer(0.3)
        out += _flag(received.is_completed())
        await received
        out += _flag(received.is_completed())
        return out

    async def letters_past_the_limit(self, limit: int, awaits: int) -> str:
        received = self.letters.receive(limit=limit)
        out = ""
        for _ in range(awaits):
            out += await received
            await timer(0.05)
        return out + f" {received.status}"

    async def combinators(self) -> list[str]:
        short, long = timer(0.05), timer(0.3)
        first, both = any_of(short, long), all_of(short, long)
        seen = [first.status, both.status]
        await first
        seen += [first.status, both.status, _flag(both.is_ongoing())]
        await both
        seen += [both.status, _flag(both.is_completed())]
        failing = any_of(self.refuses.refuse(), timer(5))
        try:
            await failing
        except TaskFailedError:
            seen += [failing.status, _flag(failing.is_failed())]
        return seen

    async def signal_or_timer(self) -> str:
        received = self.letters.receive()
        either = any_of(received, timer(5))
        before = either.status
        value = await either
        return f"{before} {value} {either.status}"


@pytest.fixture
async def client(make_worker: WorkerFactory) -> AsyncIterator[InfiniticClient]:
    worker: InfiniticWorker = make_worker()
    worker.add_service(RefusesImpl(), interface=Refuses, name="Refuses")
    worker.add_workflow(Statuses)
    async with running(worker) as c:
        yield c


async def test_a_receive_is_completed_until_its_signal_is_awaited(
    client: InfiniticClient,
) -> None:
    deferred = await client.dispatch(client.new_workflow(Statuses).is_completed)
    await client.get_workflow_by_id(Statuses, deferred.id).letters.send("a")  # type: ignore[attr-defined]
    assert await deferred == "falsetruefalse"


async def test_awaits_past_the_limit_give_the_last_signal_again(client: InfiniticClient) -> None:
    deferred = await client.dispatch(client.new_workflow(Statuses).letters_past_the_limit, 2, 3)
    stub = client.get_workflow_by_id(Statuses, deferred.id)
    for letter in "abc":
        await stub.letters.send(letter)  # type: ignore[attr-defined]
    assert await deferred == "abb completed"


async def test_awaits_past_the_limit_with_signals_coming_late(client: InfiniticClient) -> None:
    deferred = await client.dispatch(client.new_workflow(Statuses).letters_past_the_limit, 2, 4)
    stub = client.get_workflow_by_id(Statuses, deferred.id)
    for letter in "ab":
        await asyncio.sleep(0.1)
        await stub.letters.send(letter)  # type: ignore[attr-defined]
    assert await deferred == "abbb completed"


async def test_all_of_and_any_of_have_a_status(client: InfiniticClient) -> None:
    assert await client.new_workflow(Statuses).combinators() == [
        "ongoing",
        "ongoing",
        "completed",
        "ongoing",
        "true",
        "completed",
        "true",
        "failed",
        "true",
    ]


async def test_any_of_a_receive_and_a_timer(client: InfiniticClient) -> None:
    deferred = await client.dispatch(client.new_workflow(Statuses).signal_or_timer)
    await client.get_workflow_by_id(Statuses, deferred.id).letters.send("hi")  # type: ignore[attr-defined]
    assert await deferred == "ongoing hi completed"
