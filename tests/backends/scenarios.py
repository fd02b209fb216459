"""Services and workflows of the backend scenarios (self-contained: the worker subprocess of
the crash tests imports this module by its path)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Protocol

from infinitic.services import ExponentialBackoff, batch, retry, task_context
from infinitic.workflows import Workflow, new_service


class Steps(Protocol):
    async def add(self, a: int, b: int) -> int: ...

    async def flaky(self, key: str, failures: int) -> int: ...

    async def fail(self, reason: str) -> None: ...


@retry(ExponentialBackoff(minimum_seconds=0.01, maximum_seconds=0.05, maximum_retries=3))
class StepsImpl:
    """Adds; fails ``failures`` times per key then returns the retry index; or always fails."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def add(self, a: int, b: int) -> int:
        await asyncio.sleep(0.001)
        return a + b

    async def flaky(self, key: str, failures: int) -> int:
        self.calls[key] += 1
        if self.calls[key] <= failures:
            raise ConnectionError(f"attempt {self.calls[key]} of {key} failed")
        return task_context().retry_index

    async def fail(self, reason: str) -> None:
        raise PermissionError(reason)


class StepsWorkflow(Workflow):
    steps = new_service(Steps)

    async def sequence(self, n: int) -> list[int]:
        out, total = [], 0
        for i in range(n):
            total = await self.steps.add(total, i + 1)
            out.append(total)
        return out

    async def parallel(self, n: int) -> list[int]:
        return list(await asyncio.gather(*(self.steps.add(i, 1) for i in range(n))))

    async def retried(self, key: str, failures: int) -> int:
        return await self.steps.flaky(key, failures)

    async def doomed(self, reason: str) -> None:
        await self.steps.fail(reason)

    async def nap(self, seconds: float, then: int) -> int:
        await asyncio.sleep(seconds)  # a durable timer
        return await self.steps.add(then, 0)


class Fast(Protocol):
    async def one(self) -> int: ...

    async def other(self) -> int: ...


class Slow(Protocol):
    async def two(self) -> int: ...


class FastImpl:
    async def one(self) -> int:
        return 1

    async def other(self) -> int:
        return 20


class SlowImpl:
    async def two(self) -> int:
        return 2


CODE_VERSION = {"v": 1}


class ChangingWorkflow(Workflow):
    fast = new_service(Fast)
    slow = new_service(Slow)

    async def run(self) -> int:
        x = await self.fast.one()
        if CODE_VERSION["v"] == 1:
            y = await self.slow.two()
        else:  # the redeployed code calls something else at the same position
            y = await self.fast.other()
        return x + y


class Journal(Protocol):
    async def note(self, line: str) -> None: ...


class JournalImpl:
    """Writes notes by batches; the method has no result, so the batch returns nothing."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    @batch(max_messages=3, max_seconds=0.1)
    async def note(self, tasks: dict[str, str]) -> None:
        self.lines.extend(tasks.values())


class JournalWorkflow(Workflow):
    journal = new_service(Journal)

    async def write(self, lines: list[str]) -> int:
        await asyncio.gather(*(self.journal.note(line) for line in lines))
        return len(lines)
