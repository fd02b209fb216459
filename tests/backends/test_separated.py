"""A separated deployment as users run it: the three worker files of examples/separated
(engines; workflow executors; service executors), each its own ``infinitic worker`` process, on
one pulsar-lite broker and Redis, complete bank wires sent by a client that runs no worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from infinitic.client import InfiniticClient
from infinitic.transport_pulsar import PulsarTransport
from infinitic_examples.bank_wire.workflows import BankWorkflow

from .support import REDIS_URL, drop_redis_keys, require, unique

EXAMPLE = Path(__file__).parents[2] / "examples" / "separated"
ROLES = ("engines", "workflow-executors", "service-executors")
WIRES = 40

pytestmark = [pytest.mark.pulsar, pytest.mark.redis, pytest.mark.timeout(180)]


def _config(role: str, broker_url: str, namespace: str, prefix: str) -> dict[str, object]:
    """The example's file of ``role`` on the test's broker, namespace and Redis key prefix."""
    config = yaml.safe_load((EXAMPLE / f"{role}.yml").read_text())
    config["transport"] = {
        "pulsar": {
            "brokerServiceUrl": broker_url,
            "brokerFlavor": "pulsar-lite",
            "namespace": namespace,
        }
    }
    if "storage" in config:
        config["storage"]["redis"].update(url=REDIS_URL, keyPrefix=prefix)
    config["redeliveryDelaySeconds"] = 0.2
    return dict(config)


def _read(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def _spawn(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``infinitic worker -c config`` in a process of its own, its output in ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "infinitic.worker.cli", "worker", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
            start_new_session=True,
        )


async def _wait_started(log: Path, process: subprocess.Popen[bytes]) -> str:
    """The worker's "started" log line, once it is consuming."""
    for _ in range(300):
        text = _read(log)
        for line in text.splitlines():
            if " started: " in line:
                return line
        if process.poll() is not None:
            raise AssertionError(f"worker exited with {process.returncode}:\n{text}")
        await asyncio.sleep(0.1)
    raise AssertionError(f"worker not started in 30 s:\n{_read(log)}")


@pytest.fixture
async def workers(
    tmp_path: Path, pulsar_lite_url: str
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """The three workers running (their "started" lines by role), and the namespace."""
    require("Redis", REDIS_URL)
    namespace = f"separated-{uuid.uuid4().hex[:8]}"
    prefix = unique("infinitic-separated") + ":"
    processes: list[subprocess.Popen[bytes]] = []
    started: dict[str, str] = {}
    try:
        for role in ROLES:
            path = tmp_path / f"{role}.yml"
            path.write_text(yaml.safe_dump(_config(role, pulsar_lite_url, namespace, prefix)))
            log = tmp_path / f"{role}.log"
            processes.append(_spawn(path, log))
            started[role] = await _wait_started(log, processes[-1])
        yield namespace, started
    finally:
        for process in processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(35)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        await drop_redis_keys(prefix)


async def test_three_workers_complete_bank_wires(
    workers: tuple[str, dict[str, str]], pulsar_lite_url: str
) -> None:
    namespace, started = workers
    # each worker runs its roles only
    assert "BankWorkflow (state engine, tag engine)" in started["engines"]
    assert "BankService (tag engine)" in started["engines"]
    assert "BankWorkflow (executor)" in started["workflow-executors"]
    assert "services []" in started["workflow-executors"]
    assert "BankService (executor)" in started["service-executors"]
    assert "workflows []" in started["service-executors"]
    transport = PulsarTransport.for_pulsar_lite(pulsar_lite_url, namespace=namespace)
    async with InfiniticClient(transport=transport) as client:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(
                    client.new_workflow(BankWorkflow, tags={f"customer:{i}"}).wire(
                        f"wire-{i}", f"a{i}", f"b{i}", 10
                    )
                    for i in range(WIRES)
                )
            ),
            timeout=120,
        )
        ids = await client.get_ids(client.get_workflow_by_tag(BankWorkflow, "customer:0"))
    assert len(set(results)) == WIRES
    assert all(r.endswith(f":email-wire-{i}-0") for i, r in enumerate(results))
    assert ids == []  # the tag engine (in the engines' worker) removed the ended instance
