"""Workflows of the failed-method scenarios (issue 12, item 2)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from infinitic.services import timeout
from infinitic.workflows import Channel, Workflow, dispatch, new_service, new_workflow

FIX = {"fixed": False}


class Pause(Protocol):
    async def wait(self, n: int) -> int: ...


class PauseImpl:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def wait(self, n: int) -> int:
        await self.release.wait()
        return n + 1


class Multi(Workflow):
    """One instance, several method runs: one may fail while the others go on."""

    go = Channel[str]()
    pause = new_service(Pause)

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def run(self) -> str:
        word = await self.go.receive(limit=1)
        self.seen.append(word)
        return f"run:{word}"

    async def boom(self) -> str:
        self.seen.append("boom")
        if not FIX["fixed"]:
            raise ValueError("bug in one method")
        return "boom fixed"

    async def boom_later(self) -> int:
        value = await self.pause.wait(1)
        if not FIX["fixed"]:
            raise ValueError("bug after a task")
        return value

    async def waits_task(self) -> int:
        return await self.pause.wait(10)

    async def branches(self) -> list[int]:
        async def bad() -> int:
            raise ValueError("bug on a branch")

        ok = dispatch(self.pause.wait, 100)
        return list(await asyncio.gather(ok, bad()))

    async def ping(self) -> list[str]:
        return list(self.seen)


class SlowChild(Workflow):
    done = Channel[str]()

    @timeout(seconds=0.3)
    async def run(self) -> str:
        return await self.done.receive(limit=1)


class TimingOutParent(Workflow):
    """``call_child`` fails when its child times out; ``run`` goes on meanwhile."""

    go = Channel[str]()

    async def run(self) -> str:
        return "run:" + await self.go.receive(limit=1)

    async def call_child(self) -> str:
        return await new_workflow(SlowChild, tags={"slow-child"}).run()
