"""Services and workflows used by the end-to-end scenarios."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import uuid
from collections import Counter
from typing import Protocol

from pydantic import BaseModel

from infinitic.services import ExponentialBackoff, retry, task_context
from infinitic.workflows import Workflow, dispatch, new_service


class Flaky(Protocol):
    async def succeed_after(self, key: str, failures: int) -> int: ...

    async def always_fail(self, reason: str) -> None: ...


class FlakyImpl:
    """Fails ``failures`` times per key, then returns the attempt number."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def succeed_after(self, key: str, failures: int) -> int:
        self.calls[key] += 1
        if self.calls[key] <= failures:
            raise ConnectionError(f"attempt {self.calls[key]} of {key} failed")
        return task_context().retry_index

    async def always_fail(self, reason: str) -> None:
        self.calls["always_fail"] += 1
        raise PermissionError(reason)


RetryingFlaky = retry(
    ExponentialBackoff(minimum_seconds=0.01, maximum_seconds=0.05, maximum_retries=3)
)(type("RetryingFlaky", (FlakyImpl,), {}))


class FlakyWorkflow(Workflow):
    flaky = new_service(Flaky)

    async def retried(self, key: str, failures: int) -> int:
        return await self.flaky.succeed_after(key, failures)

    async def doomed(self, reason: str) -> None:
        await self.flaky.always_fail(reason)

    async def raises(self, message: str) -> str:
        raise ValueError(message)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    zip: int


@dataclasses.dataclass
class Parcel:
    weight: float
    tags: list[str]


class Echo(Protocol):
    async def echo(
        self,
        address: Address,
        parcel: Parcel,
        color: Color,
        when: dt.datetime,
        ref: uuid.UUID,
        counts: dict[str, int],
        note: str | None,
    ) -> tuple[Address, Parcel, Color, dt.datetime, uuid.UUID, dict[str, int], str | None]: ...

    async def count(self, n: int) -> int: ...

    async def wrong_return(self) -> int: ...


class EchoImpl:
    async def echo(
        self,
        address: Address,
        parcel: Parcel,
        color: Color,
        when: dt.datetime,
        ref: uuid.UUID,
        counts: dict[str, int],
        note: str | None,
    ) -> tuple[Address, Parcel, Color, dt.datetime, uuid.UUID, dict[str, int], str | None]:
        assert isinstance(address, Address)
        assert isinstance(parcel, Parcel)
        assert isinstance(color, Color)
        assert isinstance(when, dt.datetime)
        assert isinstance(ref, uuid.UUID)
        return address, parcel, color, when, ref, counts, note

    def count(self, n: int) -> int:  # a sync implementation: runs in the thread pool
        return n + 1

    async def wrong_return(self) -> int:
        return "not an int"  # type: ignore[return-value]


class EchoWorkflow(Workflow):
    echo_service = new_service(Echo)

    async def round_trip(
        self,
        address: Address,
        parcel: Parcel,
        color: Color,
        when: dt.datetime,
        ref: uuid.UUID,
        counts: dict[str, int],
        note: str | None,
    ) -> tuple[Address, Parcel, Color, dt.datetime, uuid.UUID, dict[str, int], str | None]:
        return await self.echo_service.echo(address, parcel, color, when, ref, counts, note)

    async def bad_argument(self) -> int:
        return await self.echo_service.count("three")  # type: ignore[arg-type]

    async def bad_return(self) -> int:
        return await self.echo_service.wrong_return()

    async def sequence(self, n: int) -> list[int]:
        out = []
        for i in range(n):
            out.append(await self.echo_service.count(i))
        return out

    async def parallel(self, n: int) -> list[int]:
        deferreds = [dispatch(self.echo_service.count, i) for i in range(n)]
        return list(await asyncio.gather(*deferreds))
