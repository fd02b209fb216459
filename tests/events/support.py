"""Helpers of the event listener tests: a collecting listener and the transports."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cloudevents.core.v1.event import CloudEvent

from infinitic.services import ExponentialBackoff, retry
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport, Transport
from infinitic.worker import InfiniticWorker

TRANSPORTS = ["memory", pytest.param("pulsar-lite", marks=pytest.mark.pulsar)]
WAIT = 60.0  # seconds an expected event may take, at most, on a loaded machine


class Collector:
    """An async listener keeping every event it receives, in order."""

    def __init__(self) -> None:
        self.events: list[CloudEvent] = []
        self.calls = 0
        self._changed = asyncio.Event()

    async def __call__(self, events: list[CloudEvent]) -> None:
        self.calls += 1
        self.events.extend(events)
        self._changed.set()

    async def wait_for(self, done: Callable[[list[CloudEvent]], bool]) -> list[CloudEvent]:
        """Wait until ``done(events)`` holds (checked at each listener call)."""
        async with asyncio.timeout(WAIT):
            while not done(self.events):
                self._changed.clear()
                await self._changed.wait()
        return self.events


def make_transport(name: str, request: pytest.FixtureRequest) -> Transport:
    if name == "memory":
        return InMemoryTransport()
    from infinitic.transport_pulsar import PulsarTransport

    url = request.getfixturevalue("pulsar_lite_url")
    return PulsarTransport.for_pulsar_lite(url, namespace=f"events-{uuid.uuid4().hex[:10]}")


@pytest.fixture(params=TRANSPORTS)
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    """The in-memory transport, then the Pulsar transport on pulsar-lite."""
    t = make_transport(str(request.param), request)
    await t.start()
    try:
        yield t
    finally:
        await t.close()


def worker(transport: Transport, **options: Any) -> InfiniticWorker:
    return InfiniticWorker(
        transport=transport, storage=InMemoryStorage(), redelivery_delay=0.05, **options
    )


def kinds(events: list[CloudEvent]) -> list[str]:
    """``<component>:<type suffix>`` of each event (``stateEngine:dispatch``, ...)."""
    out = []
    for e in events:
        component = e.get_source().split("/")[-2]
        out.append(f"{component}:{e.get_type().rsplit('.', 1)[-1]}")
    return out


def of_workflow(events: list[CloudEvent], workflow_id: str) -> list[CloudEvent]:
    """The events of a workflow's state engine and executor, in the order they happened."""
    mine = [
        e
        for e in events
        if "/workflows/" in e.get_source()
        and (e.get_subject() == workflow_id or _data(e).get("workflowId") == workflow_id)
    ]
    return sorted(mine, key=lambda e: e.get_time())  # type: ignore[arg-type,return-value]


def of_tasks(events: list[CloudEvent], workflow_id: str) -> dict[str, list[CloudEvent]]:
    """The service executors' events of each task a workflow ran, by task name."""
    tasks: dict[str, list[CloudEvent]] = {}
    for e in events:
        data = _data(e)
        if "/services/" in e.get_source() and data["requester"]["workflowId"] == workflow_id:
            tasks.setdefault(data["taskName"], []).append(e)
    return tasks


def _data(e: CloudEvent) -> dict[str, Any]:
    data = e.get_data()
    assert isinstance(data, dict)
    return data


class Flaky:
    """A service failing its first attempt of each call, then succeeding."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}

    @retry(ExponentialBackoff(minimum_seconds=0.05, maximum_seconds=0.1, maximum_retries=3))
    async def charge(self, key: str) -> str:
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.attempts[key] == 1:
            raise RuntimeError(f"first attempt of {key} fails")
        return f"charged {key}"
