"""Workflows of the retried-task scenarios (issue 12, item 1): workflow code that caught a task's
failure awaits the task's Deferred again after ``retry_tasks`` ran the task again."""

from __future__ import annotations

import asyncio
from typing import Protocol

from infinitic.exceptions import TaskFailedError
from infinitic.workflows import Channel, Workflow, dispatch, new_service


class Flaky(Protocol):
    async def compute(self, n: int) -> int: ...

    async def note(self, seen: str) -> None: ...


class FlakyImpl:
    """``compute`` fails until ``fixed``; once fixed, it waits for ``release``. ``note`` lets
    the test know what the workflow code saw."""

    def __init__(self) -> None:
        self.fixed = False
        self.calls = 0
        self.started = asyncio.Event()  # a fixed attempt runs
        self.failed_again = asyncio.Event()  # a second attempt failed
        self.release = asyncio.Event()
        self.notes: asyncio.Queue[str] = asyncio.Queue()

    async def compute(self, n: int) -> int:
        self.calls += 1
        if not self.fixed:
            if self.calls > 1:
                self.failed_again.set()
            raise RuntimeError(f"broken attempt {self.calls}")
        self.started.set()
        await self.release.wait()
        return n * 10

    async def note(self, seen: str) -> None:
        await self.notes.put(seen)


class AwaitsAgain(Workflow):
    go = Channel[str]()
    flaky = new_service(Flaky)

    async def run(self) -> list[str]:
        seen: list[str] = []
        d = dispatch(self.flaky.compute, 4)
        try:
            await d
        except TaskFailedError as e:
            seen.append(f"{d.status}:{e.cause}")
        try:
            await d  # again, not retried yet: the same failure
        except TaskFailedError:
            seen.append(f"again:{d.status}")
        await self.flaky.note(",".join(seen))
        await self.go.receive(limit=1)  # sent once the task was retried
        await self.flaky.note(d.status)
        seen.append(str(await d))  # the new outcome of the retried task
        seen.append(d.status)
        return seen


CODE = {"fixed": False}


class BugAfterCatch(Workflow):
    """Catches the task's failure, then fails on a bug of its own (fixed by ``CODE``)."""

    flaky = new_service(Flaky)

    async def run(self) -> int:
        d = dispatch(self.flaky.compute, 3)
        try:
            await d
        except TaskFailedError:
            await self.flaky.note("caught")
        if not CODE["fixed"]:
            raise ValueError("bug after the catch")
        return await d
