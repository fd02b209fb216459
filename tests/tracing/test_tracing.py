"""OpenTelemetry tracing (issue 13): a bank wire is one trace from the client's call through the
state engine, its workflow tasks and each task, back to the client's outcome, on the in-memory
transport and on pulsar-lite (where the context crosses a real broker in message properties);
concurrent wires are separate traces; a failing task's span says so; tracing switched off
adds nothing to messages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Protocol

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, StatusCode

from infinitic.client import InfiniticClient
from infinitic.common import tracing
from infinitic.common.messages import CommandResult, DispatchWorkflow, ExecuteTask
from infinitic.exceptions import WorkflowFailedError
from infinitic.services import NoRetry, retry
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport, Transport
from infinitic.worker import InfiniticWorker
from infinitic.workflows import Workflow, new_service
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow

TRANSPORTS = ["memory", pytest.param("pulsar-lite", marks=pytest.mark.pulsar)]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into an in-memory exporter (the process's global provider is left alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(tracer_provider=provider)
    try:
        yield exporter
    finally:
        tracing.configure()
        provider.shutdown()


@pytest.fixture(params=TRANSPORTS)
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    t: Transport
    if request.param == "memory":
        t = InMemoryTransport()
    else:
        from infinitic.transport_pulsar import PulsarTransport

        url = request.getfixturevalue("pulsar_lite_url")
        t = PulsarTransport.for_pulsar_lite(url, namespace=f"tracing-{uuid.uuid4().hex[:10]}")
    await t.start()
    try:
        yield t
    finally:
        await t.close()


def bank_worker(t: Transport, **options: Any) -> InfiniticWorker:
    w = InfiniticWorker(transport=t, storage=InMemoryStorage(), events=False, **options)
    w.add_service(InMemoryBank({"a": 1000, "b": 0}), interface=BankService)
    w.add_service(PrintingEmails(), interface=EmailService)
    w.add_workflow(BankWorkflow)
    return w


async def wire(client: InfiniticClient, wire_id: str) -> str:
    deferred = await client.dispatch(client.new_workflow(BankWorkflow).wire, wire_id, "a", "b", 1)
    await deferred.result()
    return deferred.id


def trace_of(spans: list[ReadableSpan], workflow_id: str) -> list[ReadableSpan]:
    """The spans of the trace whose client call dispatched ``workflow_id``."""
    roots = [
        s
        for s in spans
        if s.name == "dispatch BankWorkflow.wire"
        and (s.attributes or {}).get("infinitic.workflow.id") == workflow_id
    ]
    assert len(roots) == 1, [s.name for s in spans]
    trace_id = roots[0].context.trace_id
    return [s for s in spans if s.context.trace_id == trace_id]


def assert_one_tree(trace: list[ReadableSpan]) -> None:
    """One root (the client's call); every other span's parent is a span of the trace."""
    ids = {s.context.span_id for s in trace}
    roots = [s for s in trace if s.parent is None]
    assert [r.name for r in roots] == ["dispatch BankWorkflow.wire"]
    orphans = [s.name for s in trace if s.parent is not None and s.parent.span_id not in ids]
    assert orphans == []


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "remote"])
async def test_a_bank_wire_is_one_trace_from_the_client_to_each_task_and_back(
    transport: Transport, spans: InMemorySpanExporter, inline: bool
) -> None:
    worker = bank_worker(transport, inline_workflow_tasks=inline)
    async with worker, InfiniticClient(transport=transport) as client:
        workflow_id = await wire(client, "w1")
    trace = trace_of(list(spans.get_finished_spans()), workflow_id)
    assert_one_tree(trace)
    names = sorted(s.name for s in trace)
    expected = [
        "dispatch BankWorkflow.wire",
        "outcome BankWorkflow.wire",
        "task BankService.deposit",
        "task BankService.withdraw",
        "task EmailService.send",
        "workflow BankWorkflow CommandResult",
        "workflow BankWorkflow CommandResult",
        "workflow BankWorkflow CommandResult",
        "workflow BankWorkflow.wire DispatchWorkflow",
        *["workflow task BankWorkflow"] * 4,
    ]
    if not inline:  # each workflow task crosses the broker, and its outcome comes back
        expected += ["workflow task executor BankWorkflow ExecuteWorkflowTask"] * 4
        expected += ["workflow BankWorkflow WorkflowTaskCompleted"] * 4
    assert names == sorted(expected)
    by_name = {s.name: s for s in trace}
    task = by_name["task BankService.withdraw"]
    assert task.kind == SpanKind.CONSUMER
    attributes = task.attributes or {}
    assert attributes["infinitic.service.name"] == "BankService"
    assert attributes["infinitic.method.name"] == "withdraw"
    assert attributes["infinitic.task.id"]
    assert attributes["messaging.destination.name"] == "task-executor:BankService"
    assert by_name["dispatch BankWorkflow.wire"].kind == SpanKind.PRODUCER
    assert (by_name["outcome BankWorkflow.wire"].attributes or {})["infinitic.workflow.id"] == (
        workflow_id
    )
    # the task runs after the workflow task that dispatched it, in its trace
    parent = task.parent
    assert parent is not None
    assert parent.span_id in {s.context.span_id for s in trace if s.name.startswith("workflow")}


async def test_concurrent_wires_are_separate_traces(spans: InMemorySpanExporter) -> None:
    import asyncio

    transport = InMemoryTransport()
    async with bank_worker(transport), InfiniticClient(transport=transport) as client:
        ids = await asyncio.gather(*(wire(client, f"w{i}") for i in range(5)))
    finished = list(spans.get_finished_spans())
    traces = [trace_of(finished, workflow_id) for workflow_id in ids]
    assert len({t[0].context.trace_id for t in traces}) == 5
    for workflow_id, trace in zip(ids, traces, strict=True):
        assert_one_tree(trace)
        mentioned = {(s.attributes or {}).get("infinitic.workflow.id") for s in trace}
        assert mentioned - {None} == {workflow_id}  # no span of another wire leaked in
    assert sum(len(t) for t in traces) == len(finished)


class Flaky(Protocol):
    async def fail(self) -> None: ...


@retry(NoRetry())
class FlakyImpl:
    def fail(self) -> None:
        raise ValueError("no luck")


class FlakyWorkflow(Workflow):
    flaky = new_service(Flaky)

    async def run(self) -> None:
        await self.flaky.fail()


async def test_a_failing_task_span_records_the_error(spans: InMemorySpanExporter) -> None:
    transport = InMemoryTransport()
    worker = InfiniticWorker(transport=transport, storage=InMemoryStorage(), events=False)
    worker.add_service(FlakyImpl(), interface=Flaky)
    worker.add_workflow(FlakyWorkflow)
    async with worker, InfiniticClient(transport=transport) as client:
        with pytest.raises(WorkflowFailedError):
            await client.new_workflow(FlakyWorkflow).run()
    task_spans = [s for s in spans.get_finished_spans() if s.name == "task Flaky.fail"]
    assert len(task_spans) == 1
    span = task_spans[0]
    assert span.status.status_code == StatusCode.ERROR
    assert "no luck" in (span.status.description or "")
    assert [e.name for e in span.events] == ["exception"]


class RecordingTransport(InMemoryTransport):
    """Keeps the properties of every message published."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[str, Mapping[str, str]]] = []

    async def publish(self, topic: str, data: bytes, **kwargs: Any) -> None:
        self.published.append((topic, dict(kwargs.get("properties") or {})))
        await super().publish(topic, data, **kwargs)


@pytest.mark.parametrize("on", [True, False], ids=["on", "off"])
async def test_every_message_carries_the_trace_context_only_when_tracing_is_on(
    spans: InMemorySpanExporter, on: bool
) -> None:
    if not on:
        tracing.configure(enabled=False)
    transport = RecordingTransport()
    async with bank_worker(transport), InfiniticClient(transport=transport) as client:
        await wire(client, "w1")
    assert len(transport.published) >= 8  # start, 3 tasks and results, outcome
    carrying = [topic for topic, p in transport.published if "traceparent" in p]
    if on:
        assert len(carrying) == len(transport.published)
    else:
        assert carrying == []
        assert spans.get_finished_spans() == ()


async def test_an_unsampled_trace_records_nothing_and_stays_unsampled() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(tracer_provider=provider)
    try:
        transport = RecordingTransport()
        async with bank_worker(transport), InfiniticClient(transport=transport) as client:
            await wire(client, "w1")
    finally:
        tracing.configure()
    assert exporter.get_finished_spans() == ()
    parents = [p.get("traceparent", "") for _, p in transport.published]
    assert len(parents) >= 8
    assert len({p.split("-")[1] for p in parents}) == 1  # one trace id, carried through
    # never sampled downstream: the trace flags' sampled bit stays clear
    assert all(int(p.split("-")[3], 16) & 1 == 0 for p in parents), parents


def test_span_names_say_what_runs() -> None:
    start = DispatchWorkflow(workflow_name="W", workflow_id="1", method_name="run", method_args=[])
    assert tracing.message_span_name(start) == "dispatch W.run"
    assert tracing.message_span_name(start, "workflow") == "workflow W.run DispatchWorkflow"
    result = CommandResult(workflow_name="W", workflow_id="1", command_id="c", status="completed")
    assert tracing.message_span_name(result, "workflow") == "workflow W CommandResult"
    task = ExecuteTask.model_construct(service_name="S", method_name="m", task_id="t")
    assert tracing.message_span_name(task, "task executor") == "task S.m"
    attributes = tracing.message_attributes(task, "task-executor:S")
    assert attributes["infinitic.task.id"] == "t"
    assert attributes["messaging.destination.name"] == "task-executor:S"
