"""Metrics on every real backend: bank wires counted (starts, completions, task durations,
messages per topic), the storage latency labelled with the backend it measured, scraped over
HTTP."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from infinitic.client import InfiniticClient
from infinitic.worker import WorkerMetrics
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow

from .conftest import Stack

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

#: The storage each stack gives its engines, as the ``backend`` label names it.
BACKENDS = {
    "redis-zstd": "compressed+redis",
    "postgres": "postgres",
    "mysql": "mysql",
    "pulsar-lite+memory": "inmemory",
    "pulsar-lite+redis": "redis",
}


async def scrape(metrics: WorkerMetrics) -> Samples:
    assert metrics.port is not None
    reader, writer = await asyncio.open_connection(metrics.host, metrics.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_bank_wires_are_measured(stack: Stack) -> None:
    metrics = WorkerMetrics(port=0)
    worker = stack.worker(metrics=metrics)
    worker.add_service(InMemoryBank({"a": 100, "b": 0}), interface=BankService, concurrency=4)
    worker.add_service(PrintingEmails(), interface=EmailService, concurrency=4)
    worker.add_workflow(BankWorkflow, concurrency=4)
    wires = 4
    ended = "infinitic_workflow_completions_total"
    async with worker, InfiniticClient(transport=stack.transport) as client:
        await asyncio.gather(
            *(client.new_workflow(BankWorkflow).wire(f"w{i}", "a", "b", 1) for i in range(wires))
        )
        # The last store of an instance follows its result, and a task's attempt is measured
        # once its handler returns: after the workflow completed when this worker's own state
        # engine applied its result.
        sent = {"service": "EmailService", "method": "send"}
        for _ in range(400):
            samples = await scrape(metrics)
            if (
                value(samples, ended, workflow="BankWorkflow") == wires
                and value(samples, "infinitic_task_duration_seconds_count", **sent) == wires
            ):
                break
            await asyncio.sleep(0.05)
    assert value(samples, ended, workflow="BankWorkflow") == wires
    assert value(samples, "infinitic_workflow_starts_total", workflow="BankWorkflow") == wires
    for service, method in (("BankService", "withdraw"), ("EmailService", "send")):
        timed = {"service": service, "method": method}
        assert value(samples, "infinitic_task_duration_seconds_count", **timed) == wires
    cmd = {"component": "workflow_state_engine", "topic": "workflow-cmd:BankWorkflow"}
    handled = value(samples, "infinitic_messages_handled_total", **cmd)
    later = value(samples, "infinitic_message_retries_total", **cmd, reason="retry_later")
    assert handled - later == wires
    backend = BACKENDS[stack.name]
    for operation in ("get", "put", "delete"):
        count = value(
            samples,
            "infinitic_storage_operation_seconds_count",
            backend=backend,
            operation=operation,
        )
        assert count >= wires, (operation, sorted(k for k in samples if "storage" in k[0]))
