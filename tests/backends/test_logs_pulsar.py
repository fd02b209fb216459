"""Logs of a worker on pulsar-lite: the Pulsar C++ client's own lines go through Python
logging (``infinitic.transport_pulsar.client``, WARNING unless set before the process's first
client: a start logs a few lines instead of thousands), and a failed delivery is one line
carrying the message's topic."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from infinitic.storage import InMemoryStorage
from infinitic.transport import TransportMessage
from infinitic.worker import InfiniticWorker, LogContextFilter
from infinitic_examples.bank_wire.services import EmailService, PrintingEmails

from .conftest import pulsar_lite_transport

pytestmark = [pytest.mark.pulsar, pytest.mark.timeout(120)]

CLIENT_LOGGER = "infinitic.transport_pulsar.client"


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(LogContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at_info(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= logging.INFO]


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


@asynccontextmanager
async def email_worker(url: str, **options: object) -> AsyncIterator[InfiniticWorker]:
    """A started worker on a transport of its own, closed with it (a Pulsar client left to
    the garbage collector can abort the process)."""
    async with pulsar_lite_transport(url) as transport:
        worker = InfiniticWorker(transport=transport, storage=InMemoryStorage(), **options)
        worker.add_service(PrintingEmails(), interface=EmailService)
        async with worker:
            yield worker


async def test_the_pulsar_client_logs_through_python_at_warning(
    pulsar_lite_url: str, captured: Captured
) -> None:
    assert logging.getLogger(CLIENT_LOGGER).level == logging.WARNING
    async with email_worker(pulsar_lite_url):
        pass
    assert len(captured.at_info()) < 20, [r.getMessage() for r in captured.at_info()]
    assert not [r for r in captured.records if r.name == CLIENT_LOGGER]


# A process of its own: the C++ client takes its log level once, at the process's first client.
_CLIENT_LINES = """
import asyncio, json, logging, sys
from infinitic.storage import InMemoryStorage
from infinitic.transport_pulsar import PulsarTransport
from infinitic.worker import InfiniticWorker
from infinitic_examples.bank_wire.services import EmailService, PrintingEmails

url, level = sys.argv[1], sys.argv[2]
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append([record.name, record.levelname, record.getMessage()])
logging.getLogger().addHandler(Keep())
if level != "default":
    logging.getLogger("infinitic.transport_pulsar.client").setLevel(level)

async def main():
    async with PulsarTransport.for_pulsar_lite(url, namespace="logs-" + level) as transport:
        worker = InfiniticWorker(transport=transport, storage=InMemoryStorage())
        worker.add_service(PrintingEmails(), interface=EmailService)
        async with worker:
            pass
    # the C++ client's own lines of an unreachable broker (an error, then a timeout)
    async with PulsarTransport.for_pulsar_lite(
        "pulsar://127.0.0.1:1", operation_timeout_seconds=1, connection_timeout_seconds=0.5
    ) as unreachable:
        try:
            await unreachable.publish("task-executor:Nobody", b"x")
        except Exception:
            pass

asyncio.run(main())
print(json.dumps([r for r in records if r[0] == "infinitic.transport_pulsar.client"]))
"""


@pytest.mark.parametrize("level", ["default", "INFO"])
def test_the_pulsar_client_lines_reach_python_logging_at_their_level(
    pulsar_lite_url: str, level: str
) -> None:
    """Its lines reach Python logging (through a pipe: see transport_pulsar._client_log) at
    WARNING and above by default, and at INFO too when the logger says so."""
    done = subprocess.run(
        [sys.executable, "-c", _CLIENT_LINES, pulsar_lite_url, level],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = json.loads(done.stdout.strip().splitlines()[-1])
    levels = {line[1] for line in lines}
    assert "ERROR" in levels, lines  # the unreachable broker
    assert any("Connection refused" in line[2] or "127.0.0.1:1" in line[2] for line in lines)
    infos = [line for line in lines if line[1] == "INFO"]
    if level == "default":
        assert levels <= {"WARNING", "ERROR"}, lines
    else:  # a few per consumer and producer the worker opens
        assert len(infos) > 50, len(infos)


async def test_a_failed_delivery_is_one_line_with_its_topic(
    pulsar_lite_url: str, captured: Captured
) -> None:
    topic = "task-executor:EmailService"
    dead = asyncio.Event()

    async def on_dead_letter(_: TransportMessage) -> None:
        dead.set()

    async with email_worker(pulsar_lite_url, max_redeliveries=1, redelivery_delay=0.05) as worker:
        await worker.transport.subscribe(f"{topic}-dlq", "test", on_dead_letter)
        await worker.transport.publish(topic, b"not a message")
        async with asyncio.timeout(60):
            await dead.wait()
    about = [r for r in captured.at_info() if getattr(r, "topic", None) == topic]
    assert [r.levelname for r in about] == ["INFO", "ERROR"], [r.getMessage() for r in about]
    assert "failed (delivery 1)" in about[0].getMessage()
    assert "dead-lettered after 2 deliveries" in about[1].getMessage()
    assert all(r.exc_info is None for r in captured.at_info())
