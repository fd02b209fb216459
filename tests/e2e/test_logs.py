"""Logs of a worker: the ids of the message being handled on every record emitted meanwhile
(the user's task code, workflow code, the transport's line about a failed delivery), one line
per failed delivery (the stack trace at DEBUG only), and JSON output that parses."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from infinitic.services import task_context
from infinitic.transport import InMemoryTransport, TransportMessage
from infinitic.worker import LogContextFilter, configure_logging, current_log_context
from infinitic.worker.cli import main
from infinitic.workflows import Workflow, new_service
from infinitic_examples.bank_wire.services import BankService, EmailService, PrintingEmails

from .conftest import WorkerFactory, running


class LoggingBank:
    """A bank whose withdrawals log, and remember the task ids they ran as."""

    def __init__(self) -> None:
        self.task_ids: list[str] = []

    async def withdraw(self, wire_id: str, account: str, amount: int) -> None:
        context = task_context()
        assert context is not None
        self.task_ids.append(context.task_id)
        logging.getLogger("bank.code").info("withdrawing %s from %s", amount, account)

    async def deposit(self, wire_id: str, account: str, amount: int) -> None:
        pass


class LoggingWire(Workflow):
    bank = new_service(BankService)

    async def wire(self, wire_id: str) -> str:
        self.logger.info("wire %s starts", wire_id)
        await self.bank.withdraw(wire_id, "alice", 1)
        self.logger.info("wire %s withdrawn", wire_id)
        return self.workflow_id


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(LogContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Captured]:
    root = logging.getLogger()
    handler, level = Captured(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


async def test_records_emitted_while_handling_carry_the_ids(
    make_worker: WorkerFactory, captured: Captured
) -> None:
    bank = LoggingBank()
    worker = make_worker()
    worker.add_service(bank, interface=BankService)
    worker.add_workflow(LoggingWire)
    async with running(worker) as client:
        workflow_id = await client.new_workflow(LoggingWire).wire("w1")
    assert current_log_context()["workflow_id"] is None  # outside a handling: nothing

    (task,) = [r for r in captured.records if r.name == "bank.code"]
    assert task.getMessage() == "withdrawing 1 from alice"
    assert task.task_id == bank.task_ids[0]  # type: ignore[attr-defined]
    assert task.workflow_id == workflow_id  # type: ignore[attr-defined]
    assert task.workflow_name == "LoggingWire"  # type: ignore[attr-defined]
    assert task.service_name == "BankService"  # type: ignore[attr-defined]
    assert task.method_name == "withdraw"  # type: ignore[attr-defined]
    assert task.topic == "task-executor:BankService"  # type: ignore[attr-defined]
    assert f"task {bank.task_ids[0]}" in task.infinitic_ids  # type: ignore[attr-defined]

    in_workflow = [r for r in captured.records if r.name == "infinitic.workflows.LoggingWire"]
    assert [r.getMessage() for r in in_workflow] == ["wire w1 starts", "wire w1 withdrawn"]
    for record in in_workflow:
        assert record.workflow_id == workflow_id  # type: ignore[attr-defined]
        assert record.workflow_name == "LoggingWire"  # type: ignore[attr-defined]
        assert record.topic.endswith(":LoggingWire")  # type: ignore[attr-defined]


async def poison(transport: InMemoryTransport, topic: str) -> None:
    """Publish an undecodable message on ``topic`` and wait until it is dead-lettered."""
    dead = asyncio.Event()

    async def on_dead_letter(_: TransportMessage) -> None:
        dead.set()

    await transport.subscribe(f"{topic}-dlq", "test", on_dead_letter)
    await transport.publish(topic, b"not a message")
    async with asyncio.timeout(20):
        await dead.wait()


async def test_a_failing_message_logs_one_line_per_delivery(
    make_worker: WorkerFactory, captured: Captured
) -> None:
    logging.getLogger("infinitic.worker").setLevel(logging.DEBUG)
    try:
        worker = make_worker(max_redeliveries=2)
        worker.add_service(PrintingEmails(), interface=EmailService)
        transport = worker.transport
        assert isinstance(transport, InMemoryTransport)
        async with running(worker):
            await poison(transport, "task-executor:EmailService")
    finally:
        logging.getLogger("infinitic.worker").setLevel(logging.NOTSET)

    about = [
        r for r in captured.records if getattr(r, "topic", None) == "task-executor:EmailService"
    ]
    shown = [r for r in about if r.levelno >= logging.INFO]
    assert [r.levelname for r in shown] == ["INFO", "INFO", "ERROR"]
    assert "failed (delivery 1), retrying" in shown[0].getMessage()
    assert "failed (delivery 2), retrying" in shown[1].getMessage()
    assert "dead-lettered after 3 deliveries" in shown[2].getMessage()
    assert all(r.exc_info is None for r in shown)  # no stack trace at INFO and above
    traces = [r for r in about if r.levelno == logging.DEBUG and r.exc_info]
    assert len(traces) == 3  # one per failed delivery, at DEBUG
    assert "MessageDecodeError" in str(traces[0].exc_info)


async def test_json_output_parses(make_worker: WorkerFactory, restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", json_output=True, stream=stream)
    bank = LoggingBank()
    worker = make_worker(max_redeliveries=0)
    worker.add_service(bank, interface=BankService)
    worker.add_workflow(LoggingWire)
    transport = worker.transport
    assert isinstance(transport, InMemoryTransport)
    async with running(worker) as client:
        workflow_id = await client.new_workflow(LoggingWire).wire("w1")
        await poison(transport, "task-executor:BankService")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)
    (task,) = [x for x in lines if x["logger"] == "bank.code"]
    assert task["workflow_id"] == workflow_id
    assert task["task_id"] == bank.task_ids[0]
    assert task["level"] == "INFO"
    assert task["time"].endswith("Z")
    dead = [x for x in lines if "dead-lettered" in x["message"]]
    assert dead[0]["topic"] == "task-executor:BankService"
    assert dead[0]["level"] == "ERROR"


def test_the_command_line_takes_a_log_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_root: None
) -> None:
    path = tmp_path / "infinitic.yml"
    path.write_text(
        "transport: {inMemory: {}}\n"
        "workflows: [{class: infinitic_examples.bank_wire.workflows.BankWorkflow}]\n"
    )
    assert main(["worker", "-c", str(path), "--check", "--log-format", "json"]) == 0
    root = logging.getLogger()
    assert any(type(h.formatter).__name__ == "JsonLogFormatter" for h in root.handlers)
    assert main(["worker", "-c", str(path), "--check", "--log-format", "xml"]) == 2
    assert "'xml' is not one of 'text', 'json'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
        configure_logging("LOUD")
