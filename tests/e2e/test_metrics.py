"""Prometheus metrics of a worker, scraped over HTTP after bank wires: per topic messages,
handling time, in flight, failures, retries and dead letters; task durations per service and
method; workflow starts and completions; storage latency. Off unless asked for."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infinitic.exceptions import ConfigurationError
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport, TransportMessage
from infinitic.worker import InfiniticWorker, MetricsConfig, WorkerMetrics, load_config
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow

from .conftest import WorkerFactory, running

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def http_get(host: str, port: int, path: str) -> tuple[int, str]:
    """The status and body of ``GET path`` (a plain HTTP/1.1 client: no dependency)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode()


async def scrape(metrics: WorkerMetrics) -> Samples:
    """Every sample of the endpoint, by name and labels."""
    assert metrics.port is not None
    status, body = await http_get(metrics.host, metrics.port, metrics.path)
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


async def scrape_until(
    metrics: WorkerMetrics, done: Callable[[Samples], bool], seconds: float = 20.0
) -> Samples:
    """Scrape until ``done`` holds: a result reaches the client before its engine's last store
    (send before save), so counts of that store may lag behind by a moment."""
    for _ in range(int(seconds / 0.05)):
        samples = await scrape(metrics)
        if done(samples):
            return samples
        await asyncio.sleep(0.05)
    raise AssertionError(f"metrics not reached in {seconds} s: {samples}")


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, where: Callable[[dict[str, str]], bool]) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and where(dict(labels)))


def bank_worker(make_worker: WorkerFactory, **kwargs: object) -> InfiniticWorker:
    worker = make_worker(**kwargs)
    worker.add_service(InMemoryBank({"alice": 1000, "bob": 0}), interface=BankService)
    worker.add_service(PrintingEmails(), interface=EmailService)
    worker.add_workflow(BankWorkflow)
    return worker


async def test_bank_wires_are_counted(make_worker: WorkerFactory, workflow_cache_size: int) -> None:
    metrics = WorkerMetrics(port=0)
    wires = 5
    async with running(bank_worker(make_worker, metrics=metrics)) as client:
        for i in range(wires):
            await client.new_workflow(BankWorkflow).wire(f"w{i}", "alice", "bob", 1)
        # The last task's attempt is measured once its handler returns, which (its result
        # applied by this worker's own state engine) may be after the workflow completed.
        samples = await scrape_until(
            metrics,
            lambda x: (
                value(x, "infinitic_workflow_completions_total", workflow="BankWorkflow") >= wires
                and value(
                    x,
                    "infinitic_task_duration_seconds_count",
                    service="EmailService",
                    method="send",
                )
                >= wires
            ),
        )
    assert metrics.port is None
    assert metrics.url is None

    assert value(samples, "infinitic_workflow_starts_total", workflow="BankWorkflow") == wires
    assert value(samples, "infinitic_workflow_completions_total", workflow="BankWorkflow") == wires
    for service, method in (
        ("BankService", "withdraw"),
        ("BankService", "deposit"),
        ("EmailService", "send"),
    ):
        labels = {"service": service, "method": method}
        assert value(samples, "infinitic_task_duration_seconds_count", **labels) == wires
        assert value(samples, "infinitic_task_duration_seconds_sum", **labels) > 0

    def acknowledged(topic: str) -> float:
        labels = {"component": "", "topic": topic}
        component = {"workflow": "workflow_state_engine", "task": "service_executor"}
        labels["component"] = component[topic.split("-")[0]]
        if topic.startswith("workflow-task-executor"):
            labels["component"] = "workflow_executor"
        handled = value(samples, "infinitic_messages_handled_total", **labels)
        later = value(samples, "infinitic_message_retries_total", **labels, reason="retry_later")
        assert value(samples, "infinitic_message_handling_seconds_count", **labels) == handled
        return handled - later

    # Each wire: one start, 3 tasks and their 3 results (workflow tasks inline without the
    # cache; through the broker, and back as outcomes, with it).
    inline = not workflow_cache_size
    assert acknowledged("workflow-cmd:BankWorkflow") == wires
    assert acknowledged("task-executor:BankService") == 2 * wires
    assert acknowledged("task-executor:EmailService") == wires
    assert acknowledged("workflow-engine:BankWorkflow") == wires * (3 if inline else 7)
    assert acknowledged("workflow-task-executor:BankWorkflow") == (0 if inline else 4 * wires)
    for name in ("infinitic_message_failures_total", "infinitic_dead_letters_total"):
        assert total(samples, name, lambda _: True) == 0
    redeliveries = total(
        samples, "infinitic_message_retries_total", lambda x: "redelivery" in x.values()
    )
    assert redeliveries == 0
    assert total(samples, "infinitic_messages_in_flight", lambda _: True) == 0
    # Storage: every state read and written, on the in-memory backend.
    for op in ("get", "put", "delete"):
        count = value(
            samples, "infinitic_storage_operation_seconds_count", backend="inmemory", operation=op
        )
        assert count >= wires, op


async def test_failures_retries_and_dead_letters_are_counted(make_worker: WorkerFactory) -> None:
    metrics = WorkerMetrics(port=0)
    worker = bank_worker(make_worker, metrics=metrics, max_redeliveries=2)
    transport = worker.transport
    assert isinstance(transport, InMemoryTransport)
    dead_lettered = asyncio.Event()

    async def on_dead_letter(_: TransportMessage) -> None:
        dead_lettered.set()

    await transport.subscribe("task-executor:BankService-dlq", "test", on_dead_letter)
    async with running(worker):
        await transport.publish("task-executor:BankService", b"not a message")
        async with asyncio.timeout(20):
            await dead_lettered.wait()
        samples = await scrape(metrics)
    labels = {"component": "service_executor", "topic": "task-executor:BankService"}
    assert value(samples, "infinitic_message_failures_total", **labels) == 3  # 1 + 2 retries
    assert value(samples, "infinitic_messages_handled_total", **labels) == 3
    assert value(samples, "infinitic_message_retries_total", **labels, reason="redelivery") == 2
    assert value(samples, "infinitic_dead_letters_total", **labels) == 1
    # Nothing decoded: no task timed.
    assert total(samples, "infinitic_task_duration_seconds_count", lambda _: True) == 0


async def test_the_endpoint_serves_its_path_only_on_loopback(make_worker: WorkerFactory) -> None:
    metrics = WorkerMetrics(port=0)
    assert metrics.host == "127.0.0.1"
    async with running(bank_worker(make_worker, metrics=metrics)):
        assert metrics.port is not None
        assert metrics.url == f"http://127.0.0.1:{metrics.port}/metrics"
        status, body = await http_get("127.0.0.1", metrics.port, "/")
        assert status == 404
        assert "/metrics" in body
        status, body = await http_get("127.0.0.1", metrics.port, "/metrics")
        assert status == 200
        assert "infinitic_messages_handled_total" in body
        # Another worker of the same process has its own registry and endpoint.
        other = WorkerMetrics(port=0)
        async with running(bank_worker(make_worker, metrics=other)):
            assert other.port != metrics.port
            assert other.registry is not metrics.registry


async def test_a_port_in_use_is_refused_naming_it(make_worker: WorkerFactory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        worker = bank_worker(make_worker, metrics=WorkerMetrics(port=port))
        with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}"):
            await worker.start()
        await worker.close()


def test_metrics_are_off_unless_configured() -> None:
    base = {"transport": {"inMemory": {}}, "workflows": [
        {"class": "infinitic_examples.bank_wire.workflows.BankWorkflow"}]}  # fmt: skip
    assert InfiniticWorker.from_config(base, environ={}).metrics is None
    assert load_config(base, environ={}).metrics is None
    on = InfiniticWorker.from_config({**base, "metrics": None}, environ={}).metrics
    assert on is not None
    assert (on.host, on.requested_port, on.path) == (
        "127.0.0.1",
        9464,
        "/metrics",
    )
    env = {"INFINITIC__METRICS__PORT": "9100", "INFINITIC__METRICS__HOST": "0.0.0.0"}
    config = load_config({**base, "metrics": {}}, environ=env)
    assert config.metrics == MetricsConfig(host="0.0.0.0", port=9100)
    off = {**base, "metrics": {"enabled": False}}
    assert InfiniticWorker.from_config(off, environ={}).metrics is None
    with pytest.raises(ConfigurationError, match=r"metrics\.port"):
        load_config({**base, "metrics": {"port": 70000}}, environ={})
    with pytest.raises(ConfigurationError, match=r"metrics\.path"):
        load_config({**base, "metrics": {"path": "metrics"}}, environ={})
    with pytest.raises(ConfigurationError, match=r"metrics\.bind"):
        load_config({**base, "metrics": {"bind": "x"}}, environ={})
    with pytest.raises(ConfigurationError, match="metrics port must be an integer"):
        WorkerMetrics(port=-1)
    with pytest.raises(ConfigurationError, match="metrics must be a WorkerMetrics"):
        InfiniticWorker(
            transport=InMemoryTransport(),
            storage=InMemoryStorage(),
            metrics=True,  # type: ignore[arg-type]
        )
