"""An unreachable store or broker is named by its URL, password hidden, in the error a worker
start raises and in every line it logs meanwhile (Redis, PostgreSQL, MySQL, Pulsar)."""

from __future__ import annotations

import logging
import socket

import pytest

from infinitic.worker import InfiniticWorker, UnreachableError, _preflight

SECRET = "s3cret-pw"
WORKFLOWS = [{"class": "infinitic_examples.bank_wire.workflows.BankWorkflow"}]


@pytest.fixture(autouse=True)
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_preflight, "CHECK_SECONDS", 1.5)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once closed


def _store(backend: str) -> tuple[dict[str, object], str]:
    """Options of an unreachable ``backend`` with a password, and how the error names it."""
    port = _closed_port()
    if backend == "mysql":  # no URL: host, port, user and password
        options = {"host": "127.0.0.1", "port": port, "user": "u", "password": SECRET}
        return options, f"storage.mysql at 127.0.0.1:{port}"
    scheme = {"redis": "redis", "postgres": "postgresql"}[backend]
    options = {"url": f"{scheme}://user:{SECRET}@127.0.0.1:{port}/test"}
    return options, f"storage.{backend} at {scheme}://user:**********@127.0.0.1:{port}/test"


@pytest.mark.parametrize(
    ("backend", "driver"), [("redis", "redis"), ("postgres", "asyncpg"), ("mysql", "aiomysql")]
)
async def test_an_unreachable_store_is_named_without_its_password(
    backend: str, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip(driver)
    options, named = _store(backend)
    config = {"transport": {"inMemory": {}}, "storage": {backend: options}}
    worker = InfiniticWorker.from_config({**config, "workflows": WORKFLOWS}, environ={})
    caplog.set_level(logging.DEBUG)
    with pytest.raises(UnreachableError) as caught:
        await worker.start()
    await worker.close()
    message = str(caught.value)
    assert f"{named} is unreachable" in message
    assert SECRET not in message
    assert named in caplog.text  # the retries were logged, naming the store...
    assert SECRET not in caplog.text  # ...never with its password


async def test_an_unreachable_broker_is_named_without_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("pulsar")
    url = f"pulsar://user:{SECRET}@127.0.0.1:{_closed_port()}"
    config = {"transport": {"pulsar": {"brokerServiceUrl": url}}, "workflows": WORKFLOWS}
    worker = InfiniticWorker.from_config(config, environ={})
    caplog.set_level(logging.DEBUG)
    with pytest.raises(UnreachableError) as caught:
        await worker.start()
    await worker.close()
    message = str(caught.value)
    assert "the Pulsar broker (transport) at pulsar://user:**********@127.0.0.1:" in message
    assert SECRET not in message
    assert SECRET not in caplog.text
