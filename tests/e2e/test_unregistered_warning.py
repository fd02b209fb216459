"""A client call for a workflow no worker runs logs a warning after the configured delay
(client ``unregistered_warning_seconds``) naming the workflow and the topic, instead of waiting
silently; a workflow whose state engine runs, however long it takes, raises no warning."""

from __future__ import annotations

import asyncio
import logging

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import ConfigurationError
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker
from infinitic.workflows import Channel, Workflow


class Patient(Workflow):
    go = Channel[str]()

    async def run(self) -> str:
        return await self.go.receive(limit=1)


def client_of(transport: InMemoryTransport, delay: float | None) -> InfiniticClient:
    """A client whose probe waits 0.2 s instead of 5."""
    client = InfiniticClient(transport=transport, unregistered_warning_seconds=delay)
    client._core.watch.probe_wait = 0.2
    return client


async def test_a_workflow_nobody_runs_is_warned_of(caplog: pytest.LogCaptureFixture) -> None:
    transport = InMemoryTransport()
    async with client_of(transport, 0.1) as client:
        await client.dispatch(client.new_workflow(Patient).run)
        await asyncio.sleep(0.6)
        assert client._core.watch.warned == [("Patient", "workflow-cmd:Patient")]
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "nothing answered from workflow Patient" in m and "workflow-cmd:Patient" in m
        for m in messages
    ), messages


async def test_a_running_workflow_is_not_warned_of(caplog: pytest.LogCaptureFixture) -> None:
    transport = InMemoryTransport()
    worker = InfiniticWorker(transport=transport, storage=InMemoryStorage())
    worker.add_workflow(Patient)
    async with (
        worker,
        client_of(transport, 0.1) as client,
    ):
        deferred = await client.dispatch(client.new_workflow(Patient).run)
        await asyncio.sleep(0.6)  # the workflow waits for its signal: the probe is answered
        assert client._core.watch.warned == []
        running = client.get_workflow_by_id(Patient, deferred.id)
        await running.go.send("done")
        assert await deferred == "done"  # the probe's answer was nobody else's
    assert not [r for r in caplog.records if "nothing answered" in r.getMessage()]


async def test_engines_in_another_worker_answer_too() -> None:
    transport, storage = InMemoryTransport(), InMemoryStorage()
    engines = InfiniticWorker(transport=transport, storage=storage)
    engines.add_workflow("Patient")  # the state engine, without the code
    async with (
        engines,
        client_of(transport, 0.1) as client,
    ):
        await client.dispatch(client.new_workflow(Patient).run)
        await asyncio.sleep(0.6)
        assert client._core.watch.warned == []


async def test_no_warning_and_no_probe_when_disabled() -> None:
    transport = InMemoryTransport()
    async with client_of(transport, None) as client:
        await client.dispatch(client.new_workflow(Patient).run)
        await asyncio.sleep(0.3)
        assert client._core.watch.warned == []
        assert client._core.watch._watches == {}


def test_configuration() -> None:
    client = InfiniticClient.from_config(
        {"transport": {"inMemory": {}}, "client": {"unregisteredWarningSeconds": 5}}
    )
    assert client._core.watch.delay == 5
    client = InfiniticClient.from_config(
        {"transport": {"inMemory": {}}, "client": {"unregistered_warning_seconds": None}}
    )
    assert client._core.watch.delay is None
    assert InfiniticClient.from_config({"transport": {"inMemory": {}}})._core.watch.delay == 30
    with pytest.raises(ConfigurationError, match="unregisteredWarningSeconds must be a positive"):
        InfiniticClient.from_config(
            {"transport": {"inMemory": {}}, "client": {"unregisteredWarningSeconds": 0}}
        )
    with pytest.raises(ConfigurationError, match="unregistered_warning_seconds must be"):
        InfiniticClient(transport=InMemoryTransport(), unregistered_warning_seconds=-1)
