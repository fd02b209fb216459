"""Services and workflows of the instance-lifetime and Deferred-escape scenarios (issue 12,
items 7 and 8)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from infinitic.workflows import (
    Channel,
    Deferred,
    Workflow,
    dispatch,
    get_workflow_by_id,
    new_service,
    new_workflow,
)


class Gate(Protocol):
    async def hold(self, n: int) -> int: ...

    async def note(self, what: str) -> str: ...

    async def echo(self, value: Any) -> Any: ...


class GateImpl:
    """``hold`` blocks until ``release`` is set; ``note`` records what it is told."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.held = 0
        self.notes: list[str] = []

    async def hold(self, n: int) -> int:
        self.held += 1
        await self.release.wait()
        return n * 10

    async def note(self, what: str) -> str:
        self.notes.append(what)
        return what

    async def echo(self, value: Any) -> Any:
        return value


class Forever(Workflow):
    """A child that runs until told to stop."""

    stop = Channel[str]()

    async def run(self) -> str:
        return await self.stop.receive(limit=1)


class Launcher(Workflow):
    """Methods that start things and return before they end."""

    gate = new_service(Gate)

    def __init__(self) -> None:
        self.label = "initial"

    async def fire_task(self, label: str) -> str:
        self.label = label
        dispatch(self.gate.hold, 1)  # fire and forget
        return "started"

    async def fire_child(self) -> str:
        child = new_workflow(Forever, tags={"lifetime-child"})
        dispatch(child.run)
        return "started"

    async def call_myself(self, what: str) -> str:
        me = get_workflow_by_id(Launcher, self.workflow_id)
        dispatch(me.later, what)  # a method run on this very instance
        return "dispatched"

    async def later(self, what: str) -> str:
        return await self.gate.note(f"{what}:{self.label}")

    async def read_label(self) -> str:
        return self.label


class Escaper(Workflow):
    """Deferreds that leave the method that created them."""

    gate = new_service(Gate)

    def __init__(self) -> None:
        self.kept: Deferred[int] | None = None
        self.many: list[Deferred[int]] = []

    async def in_property(self) -> int:
        self.kept = dispatch(self.gate.hold, 1)
        return 0

    async def in_list_property(self) -> int:
        self.many.append(dispatch(self.gate.hold, 2))
        return 0

    async def as_argument(self) -> Any:
        deferred = dispatch(self.gate.hold, 3)
        return await self.gate.echo(deferred)

    async def as_child_argument(self) -> Any:
        deferred = dispatch(self.gate.hold, 4)
        child = new_workflow(Escaper)
        return await child.takes(deferred)

    async def takes(self, value: Any) -> Any:
        return value

    async def awaited_locally(self) -> int:
        deferred = dispatch(self.gate.note, "local")
        self.kept = None
        return len(await deferred)
