"""What the dashboard tests share: an order workflow waiting for a payment signal then charging
a card (a service that fails until told otherwise), and a timeline that can be waited on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from cloudevents.core.v1.event import CloudEvent

from infinitic.dashboard import EventTimeline
from infinitic.services import name
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker, WorkerMetrics
from infinitic.workflows import Channel, Workflow, new_service

WAIT = 30.0  # seconds an expected event may take, at most, on a loaded machine


@name("Cards")
class Cards(Protocol):
    async def charge(self, amount: int) -> str: ...


class FlakyCards:
    """Fails while ``broken`` (the bug), then charges."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken

    async def charge(self, amount: int) -> str:
        if self.broken:
            raise RuntimeError("card processor down")
        return f"charged {amount}"


@name("DashOrder")
class DashOrder(Workflow):
    paid = Channel[int]()

    async def run(self, order_id: str) -> str:
        amount = await self.paid.receive(limit=1)
        receipt = await new_service(Cards).charge(amount)
        return f"{order_id} {receipt}"


class WaitableTimeline(EventTimeline):
    """A timeline whose tests can wait for what its events tell."""

    def __init__(self) -> None:
        super().__init__(max_events=100, retention_seconds=600)
        self._changed = asyncio.Event()

    async def __call__(self, events: list[CloudEvent]) -> None:
        await super().__call__(events)
        self._changed.set()

    async def wait_for(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    def status(self, workflow_id: str) -> str | None:
        summary = self.summary(workflow_id)
        return summary.status if summary is not None else None

    def saw(self, workflow_id: str, event_type: str) -> bool:
        return any(e.type == event_type for e in self.events(workflow_id))


def order_worker(
    cards: FlakyCards, timeline: EventTimeline, metrics: WorkerMetrics | None = None
) -> tuple[InfiniticWorker, InMemoryTransport, InMemoryStorage]:
    """A worker of DashOrder and Cards on the in-memory stack, with the timeline listening."""
    transport, storage = InMemoryTransport(), InMemoryStorage()
    worker = InfiniticWorker(
        transport=transport, storage=storage, redelivery_delay=0.05, metrics=metrics
    )
    worker.add_service(cards, interface=Cards, retry=None)
    worker.add_workflow(DashOrder)
    worker.add_event_listener(timeline, batch={"max_messages": 100, "max_seconds": 0.02})
    return worker, transport, storage
