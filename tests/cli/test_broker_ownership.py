"""An embedded pulsar-lite broker is never stopped by a process that does not own it: a second
process on the same data directory joins it as a client, and takes it over when the owner exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from pathlib import Path

import pytest

from .support import WorkerProcess, free_port, infinitic, redis_url

pytestmark = [pytest.mark.pulsar, pytest.mark.timeout(240)]

pulsar_lite = pytest.importorskip("infinitic.transport_pulsar")


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


async def test_a_second_broker_joins_leaves_the_owner_running_and_takes_over(
    tmp_path: Path,
) -> None:
    first = pulsar_lite.EmbeddedPulsarLite(data_dir=tmp_path, port=free_port())
    await first.start()
    second = pulsar_lite.EmbeddedPulsarLite(data_dir=tmp_path)  # its port is the owner's
    try:
        await second.start()
        assert first.owned
        assert not second.owned
        assert second.port == first.port
        assert second.owner_pid == os.getpid()
        assert second.service_url == first.service_url
        broker_pid = first.pid
        assert broker_pid is not None
        await second.stop()
        assert _running(broker_pid)  # not stopped by who does not own it

        wrong = pulsar_lite.EmbeddedPulsarLite(data_dir=tmp_path, port=free_port())
        with pytest.raises(RuntimeError, match=f"listens on port {first.port}"):
            await wrong.start()
        assert _running(broker_pid)

        await second.start()
        await first.stop()  # the owner leaves: the one that joined launches the broker again
        for _ in range(300):
            if second.owned and second.takeovers == 1 and _port_open(second.port):
                break
            await asyncio.sleep(0.05)
        assert second.owned
        assert second.takeovers == 1
        assert second.pid not in (None, broker_pid)
        assert _port_open(first.port)
    finally:
        await second.stop()
        await first.stop()
    assert not _port_open(first.port)


@pytest.mark.redis
def test_two_worker_processes_on_one_embedded_broker(tmp_path: Path) -> None:
    config = tmp_path / "infinitic.yml"
    config.write_text(
        f"""
transport:
  pulsarLite: {{port: {free_port()}, dataDir: {tmp_path / "pulsar"}}}
storage:
  redis: {{url: "{redis_url()}", keyPrefix: "owner-{uuid.uuid4().hex[:8]}:"}}
services:
  - {{name: Greeter, class: cli_flows.GreeterImpl, interface: cli_flows.Greeter}}
workflows:
  - {{name: HelloWorkflow, class: cli_flows.HelloWorkflow}}
"""
    )

    def hello(name: str) -> None:
        done = infinitic(
            "workflow", "start", "-c", str(config), "HelloWorkflow", "hello", name,
            "--wait", "--timeout", "60", "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["result"] == f"hello {name}"

    owner = WorkerProcess(config, tmp_path / "owner.log")
    owner.wait_for("started")
    joined = WorkerProcess(config, tmp_path / "joined.log")
    try:
        joined.wait_for("started")
        assert f"belongs to live process {owner.process.pid}" in joined.text()
        broker_pid = int((tmp_path / "pulsar" / "broker.pid").read_text())
        hello("a")
        assert joined.stop() == 0, joined.text()
        assert _running(broker_pid)  # the owner's broker outlives the process that joined it
        hello("b")

        joined = WorkerProcess(config, tmp_path / "joined-again.log")
        joined.wait_for("started")
        assert owner.stop() == 0, owner.text()
        joined.wait_for("takes the broker over")
        hello("c")  # the process that joined runs everything now
    finally:
        joined.stop()
        owner.stop()
