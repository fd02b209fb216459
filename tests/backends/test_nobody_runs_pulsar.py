"""The warning for a workflow nobody runs, on pulsar-lite: a client configured by its file and
``INFINITIC__CLIENT__...`` / ``INFINITIC__TRANSPORT__...`` variables warns, naming the broker's
topic, when no state engine answers its probe, and stays silent when an engines-only worker
runs the workflow. (Services have no such warning: nothing on their topics answers a request.)
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from infinitic.client import InfiniticClient
from infinitic.storage import InMemoryStorage
from infinitic.transport_pulsar import PulsarTransport
from infinitic.worker import InfiniticWorker
from infinitic.workflows import Channel, Workflow

pytestmark = pytest.mark.pulsar


class Idle(Workflow):
    go = Channel[str]()

    async def run(self) -> str:
        return await self.go.receive(limit=1)


def configured_client(url: str, monkeypatch: pytest.MonkeyPatch, namespace: str) -> InfiniticClient:
    monkeypatch.setenv("INFINITIC__CLIENT__UNREGISTERED_WARNING_SECONDS", "0.2")
    monkeypatch.setenv("INFINITIC__TRANSPORT__PULSAR__NAMESPACE", namespace)
    config = {"transport": {"pulsar": {"brokerServiceUrl": url, "namespace": "not-this-one"}}}
    return InfiniticClient.from_config(config)


async def watched(client: InfiniticClient, probe_wait: float) -> list[tuple[str, str]]:
    """Dispatch Idle and wait for the end of the watch it starts; the warnings logged."""
    watch = client._core.watch
    watch.probe_wait = probe_wait
    await client.dispatch(client.new_workflow(Idle).run)
    await asyncio.wait_for(asyncio.shield(watch._watches["Idle"]), 10 + probe_wait)
    return watch.warned


async def test_nobody_runs_the_workflow(
    pulsar_lite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    namespace = f"e2e-{uuid.uuid4().hex[:10]}"
    async with configured_client(pulsar_lite_url, monkeypatch, namespace) as client:
        assert client._core.watch.delay == 0.2
        warned = await watched(client, probe_wait=0.5)
    topic = f"persistent://infinitic/{namespace}/workflow-cmd:Idle"
    assert warned == [("Idle", topic)]
    assert any(
        r.levelno == logging.WARNING and "nothing answered from workflow Idle" in r.getMessage()
        for r in caplog.records
    )


async def test_an_engines_only_worker_answers(
    pulsar_lite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = f"e2e-{uuid.uuid4().hex[:10]}"
    worker = InfiniticWorker(
        transport=PulsarTransport.for_pulsar_lite(pulsar_lite_url, namespace=namespace),
        storage=InMemoryStorage(),
    )
    worker.add_workflow("Idle")  # its state engine, without the code
    async with worker, configured_client(pulsar_lite_url, monkeypatch, namespace) as client:
        assert await watched(client, probe_wait=10.0) == []  # answered long before 10 s
