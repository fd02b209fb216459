"""Arguments and results that cannot be encoded (an integer beyond 64 bits, a lone surrogate)
are refused with a payload error naming the entity, the method and the parameter: at the client
before anything is sent, in a workflow before its task is dispatched, in a service for its
return value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import InvalidPayloadError, WorkflowFailedError
from infinitic.transport import InMemoryTransport
from infinitic.workflows import Workflow, new_service

from .conftest import WorkerFactory, running

TOO_BIG = 2**64
LONE = "caf\udce9"


class Numbers(Protocol):
    async def add(self, a: int, b: int) -> int: ...

    async def huge(self) -> int: ...


class NumbersImpl:
    async def add(self, a: int, b: int) -> int:
        return a + b

    async def huge(self) -> int:
        return TOO_BIG


class Totals(Workflow):
    numbers = new_service(Numbers)

    async def total(self, values: list[int], label: str = "total") -> int:
        return sum(values)

    async def add_too_big(self, a: int) -> int:
        return await self.numbers.add(a, TOO_BIG)

    async def huge(self) -> int:
        return await self.numbers.huge()


class RecordingTransport(InMemoryTransport):
    """The in-memory transport, remembering the topic of every publish."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[str] = []

    async def publish(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None = None,
        deliver_at: float | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self.published.append(topic)
        await super().publish(topic, data, key=key, deliver_at=deliver_at, properties=properties)


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (([1, TOO_BIG],), {}, r"parameter 'values': cannot be encoded: \[1\]: the integer 1844"),
        (([1],), {"label": LONE}, r"parameter 'label': cannot be encoded: a string with the lone"),
    ],
    ids=["beyond 64 bits", "lone surrogate"],
)
async def test_the_client_refuses_before_anything_is_sent(
    args: tuple[Any, ...], kwargs: dict[str, Any], expected: str
) -> None:
    transport = RecordingTransport()
    async with InfiniticClient(transport=transport) as client:
        where = r"^workflow Totals, method total, "
        with pytest.raises(InvalidPayloadError, match=where + expected):
            await client.new_workflow(Totals).total(*args, **kwargs)
        with pytest.raises(InvalidPayloadError, match=where + expected):
            await client.dispatch(client.new_workflow(Totals).total, *args, **kwargs)
        existing = client.get_workflow_by_id(Totals, "some-id")
        with pytest.raises(InvalidPayloadError, match=where + expected):
            await client.dispatch(existing.total, *args, **kwargs)
    assert transport.published == []


async def test_a_workflow_passing_a_too_big_integer_to_a_service_fails_naming_it(
    make_worker: WorkerFactory,
) -> None:
    worker = make_worker()
    worker.add_service(NumbersImpl(), interface=Numbers)
    worker.add_workflow(Totals)
    async with running(worker) as client:
        with pytest.raises(WorkflowFailedError) as caught:
            await client.new_workflow(Totals).add_too_big(1)
        assert await client.new_workflow(Totals).total([1, 2**64 - 2]) == 2**64 - 1
    message = str(caught.value)
    assert "service Numbers, method add, parameter 'b': cannot be encoded" in message
    assert "the integer 18446744073709551616 (beyond 64 bits" in message


async def test_a_service_returning_a_too_big_integer_fails_naming_its_return_value(
    make_worker: WorkerFactory,
) -> None:
    worker = make_worker()
    worker.add_service(NumbersImpl(), interface=Numbers)
    worker.add_workflow(Totals)
    async with running(worker) as client:
        with pytest.raises(WorkflowFailedError) as caught:
            await client.new_workflow(Totals).huge()
    assert "service Numbers, method huge, return value: cannot be encoded" in str(caught.value)
