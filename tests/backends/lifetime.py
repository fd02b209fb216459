"""Workflows of the instance-lifetime scenario on real backends (issue 12, items 7 and 8)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from infinitic.workflows import (
    Channel,
    Deferred,
    Workflow,
    dispatch,
    get_workflow_by_id,
    new_service,
)


class Notes(Protocol):
    async def hold(self) -> int: ...

    async def note(self, what: str) -> str: ...


class NotesImpl:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.notes: list[str] = []

    async def hold(self) -> int:
        await self.release.wait()
        return 1

    async def note(self, what: str) -> str:
        self.notes.append(what)
        return what


class SelfCaller(Workflow):
    notes = new_service(Notes)

    def __init__(self) -> None:
        self.label = "initial"
        self.kept: Deferred[int] | None = None

    async def call_myself(self, what: str) -> str:
        dispatch(get_workflow_by_id(SelfCaller, self.workflow_id).later, what)
        return "dispatched"

    async def fire_task(self, label: str) -> str:
        self.label = label
        dispatch(self.notes.hold)
        return "started"

    async def later(self, what: str) -> str:
        return await self.notes.note(f"{what}:{self.label}")

    async def read_label(self) -> str:
        return self.label

    async def keep_deferred(self) -> int:
        self.kept = dispatch(self.notes.hold)
        return 0


FIXED = {"boom": False}


class OneFails(Workflow):
    """A method that raises until fixed, beside one that goes on (issue 12, item 2)."""

    go = Channel[str]()

    async def run(self) -> str:
        return "run:" + await self.go.receive(limit=1)

    async def boom(self) -> str:
        if not FIXED["boom"]:
            raise ValueError("bug in one method")
        return "fixed"
