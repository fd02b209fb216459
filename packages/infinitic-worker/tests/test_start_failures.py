"""A worker refuses to start, before anything starts, when its configuration lacks a transport
or anything to run, names a class that is not a workflow or does not implement its service, or
when its storage or broker is unreachable (named by its address, password hidden)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from infinitic.exceptions import ConfigurationError
from infinitic.worker import InfiniticWorker, UnreachableError, _preflight
from infinitic.worker.cli import main


@pytest.fixture(autouse=True)
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_preflight, "CHECK_SECONDS", 1.0)


WORKFLOWS = "workflows: [{class: infinitic_examples.bank_wire.workflows.BankWorkflow}]\n"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once closed


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "infinitic.yml"
    path.write_text(text)
    return str(path)


def test_a_worker_without_transport_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigurationError, match="transport: missing"):
        InfiniticWorker.from_config({"workflows": []}, environ={})
    path = write(tmp_path, WORKFLOWS)
    assert main(["worker", "-c", path, "--check"]) == 2
    assert "transport: missing" in capsys.readouterr().err
    path = write(tmp_path, "transport: {inMemory: {}}\n" + WORKFLOWS)
    assert main(["worker", "-c", path, "--check"]) == 0  # in memory, when said so
    assert "valid (0 services, 1 workflows)" in capsys.readouterr().out


def test_nothing_to_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "-c", write(tmp_path, "transport: {inMemory: {}}\n"), "--check"]) == 2
    assert "nothing to run" in capsys.readouterr().err
    writer = "infinitic_examples.event_listeners.json_lines.JsonLinesWriter"
    listener = f"eventListener: {{class: {writer}"
    lonely = write(tmp_path, f"transport: {{inMemory: {{}}}}\n{listener}}}\n")
    assert main(["worker", "-c", lonely, "--check"]) == 2  # it would listen to nothing
    assert "nothing to run" in capsys.readouterr().err
    allowed = ", workflows: {allow: [BankWorkflow]}}"
    alone = write(tmp_path, f"transport: {{inMemory: {{}}}}\n{listener}{allowed}\n")
    assert main(["worker", "-c", alone, "--check"]) == 0  # a worker of a listener only
    assert "valid (0 services, 0 workflows" in capsys.readouterr().out


def test_classes_that_are_not_what_they_are_said_to_be(tmp_path: Path) -> None:
    mem = {"transport": {"inMemory": {}}}
    not_a_workflow = {
        "workflows": [{"class": "infinitic_examples.bank_wire.services.InMemoryBank"}]
    }
    with pytest.raises(ConfigurationError, match=r"workflows\.0\.class: .*not a Workflow subclass"):
        InfiniticWorker.from_config({**mem, **not_a_workflow}, environ={})
    wrong_service = {
        "services": [
            {
                "class": "infinitic_examples.bank_wire.services.PrintingEmails",
                "interface": "infinitic_examples.bank_wire.services.BankService",
            }
        ]
    }
    with pytest.raises(
        ConfigurationError, match=r"services\.0: .*does not implement deposit, withdraw"
    ):
        InfiniticWorker.from_config({**mem, **wrong_service}, environ={})


async def test_an_unreachable_storage_is_named_without_its_password() -> None:
    pytest.importorskip("redis")
    url = f"redis://user:s3cret@127.0.0.1:{_closed_port()}/0"
    config = {"transport": {"inMemory": {}}, "storage": {"redis": {"url": url}}}
    worker = InfiniticWorker.from_config({**config, "workflows": [
        {"class": "infinitic_examples.bank_wire.workflows.BankWorkflow"}]}, environ={})  # fmt: skip
    with pytest.raises(UnreachableError) as caught:
        await worker.start()
    message = str(caught.value)
    assert url.replace("s3cret", "**********") in message
    assert "s3cret" not in message
    assert "nothing was started" in message
    assert worker.in_flight() == {}
    await worker.close()


async def test_an_unreachable_broker_is_named() -> None:
    pytest.importorskip("pulsar")
    url = f"pulsar://127.0.0.1:{_closed_port()}"
    config = {"transport": {"pulsar": {"brokerServiceUrl": url}}, "workflows": [
        {"class": "infinitic_examples.bank_wire.workflows.BankWorkflow"}]}  # fmt: skip
    worker = InfiniticWorker.from_config(config, environ={})
    with pytest.raises(UnreachableError, match=f"Pulsar broker .* at {url} is unreachable"):
        await worker.start()
    await worker.close()


def test_the_command_exits_with_1_when_the_storage_is_unreachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("redis")
    path = write(
        tmp_path,
        "transport: {inMemory: {}}\n"
        f"storage: {{redis: {{url: 'redis://:pw@127.0.0.1:{_closed_port()}/0'}}}}\n" + WORKFLOWS,
    )
    assert main(["worker", "-c", path]) == 1
    err = capsys.readouterr().err
    assert "worker not started: storage.redis at redis://:**********@127.0.0.1:" in err
