"""What a task's code changes in its context stays with that task run."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

from infinitic.services import task_context
from infinitic.workflows import Workflow, new_service

from .conftest import WorkerFactory, running

# A variable the service code sets and never resets, as a library binding request-scoped
# values (a log context, a tracing baggage) would.
_LAST: ContextVar[str | None] = ContextVar("last_label", default=None)


class Marker(Protocol):
    async def mark(self, label: str) -> str | None: ...

    def mark_sync(self, label: str) -> str | None: ...


class MarkerImpl:
    """Returns the value it finds, then sets its own: a run must never find another's."""

    async def mark(self, label: str) -> str | None:
        assert task_context().service_name == "Marker"
        found = _LAST.get()
        _LAST.set(label)
        return found

    def mark_sync(self, label: str) -> str | None:
        found = _LAST.get()
        _LAST.set(label)
        return found


class MarkTwice(Workflow):
    marker = new_service(Marker)

    async def run(self) -> list[str | None]:
        found = [await self.marker.mark("first"), await self.marker.mark("second")]
        found += [await self.marker.mark_sync("third"), await self.marker.mark_sync("fourth")]
        return found


async def test_context_variables_set_by_a_task_do_not_reach_the_next(
    make_worker: WorkerFactory,
) -> None:
    worker = make_worker()
    # One handler: both runs of each method are handled by the same consumer task.
    worker.add_service(MarkerImpl(), interface=Marker, concurrency=1)
    worker.add_workflow(MarkTwice)
    async with running(worker) as client:
        found = await client.new_workflow(MarkTwice).run()
    assert found == [None, None, None, None]
    assert _LAST.get() is None
