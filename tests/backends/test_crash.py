"""Crash safety with real processes: a worker (the ``infinitic`` command line, in its own
process, on pulsar-lite with Redis or PostgreSQL; alone or beside a second one) or the broker
is SIGKILLed at random moments and restarted while 500 bank wires run; every workflow
completes once with the right result and none stalls (the test never restarts the broker
itself: the embedded broker heals itself). Poison messages on every topic end in its
dead-letter twin while wires keep flowing."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from infinitic.client import InfiniticClient
from infinitic.storage import InMemoryStorage, PostgresStorage, RedisStorage, Storage
from infinitic.transport import DLQ_ERROR_PROPERTY, TransportMessage
from infinitic.worker import InfiniticWorker
from infinitic.workflow_engine import decode_state, state_key
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow

from .bank import RedisBank
from .conftest import pulsar_lite_transport
from .support import (
    POSTGRES_URL,
    REDIS_URL,
    drop_postgres_schema,
    drop_redis_keys,
    require,
    unavailable,
    unique,
)

HERE = Path(__file__).parent
WIRES = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A pulsar-lite broker on a data directory, worker processes, and their settings.

    Worker processes use the default consumer-id offsets (random), as users would."""

    broker: Any
    config: Path
    env: dict[str, str]
    log: Path
    namespace: str
    prefix: str
    open_storage: Callable[[], Storage]  # the workers' storage, for inspection
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    starts: int = 0

    def start_worker(self) -> None:
        self.starts += 1
        with open(self.log, "ab") as log:
            self.processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "infinitic.worker._cli",
                        "worker",
                        "-c",
                        str(self.config),
                    ],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def kill_worker(self, index: int = 0) -> None:
        process = self.processes.pop(index)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)

    def kill_all(self) -> None:
        while self.processes:
            self.kill_worker()

    async def restart_broker(self) -> None:
        pid = self.broker.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await self.broker.stop()  # reaps it; the data directory is kept
        await asyncio.sleep(0.2)
        await self.broker.start()  # same port, same data


@pytest.fixture
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """A broker and a worker configuration; the workflow states go to Redis, or to the
    storage named by an indirect parameter (``postgres``). The bank is in Redis."""
    kind = getattr(request, "param", "redis")
    require("Redis", REDIS_URL)
    if kind == "postgres":
        require("PostgreSQL", POSTGRES_URL)
    try:
        from infinitic.transport_pulsar import EmbeddedPulsarLite

        broker = EmbeddedPulsarLite(port=free_port(), data_dir=tmp_path / "broker")
        await broker.start()
    except (ImportError, OSError, RuntimeError) as e:
        unavailable(f"cannot start pulsar-lite: {e}")
        return
    prefix = unique("infinitic-crash") + ":"
    namespace = f"crash-{uuid.uuid4().hex[:8]}"
    schema = prefix.rstrip(":").replace("-", "_")
    storage_section: dict[str, Any]
    if kind == "postgres":
        storage_section = {"postgres": {"url": POSTGRES_URL, "schema": schema}}
    else:
        storage_section = {"redis": {"url": REDIS_URL, "keyPrefix": prefix + "s:"}}

    def open_storage() -> Storage:
        if kind == "postgres":
            return PostgresStorage.from_url(POSTGRES_URL, schema=schema)
        return RedisStorage.from_url(REDIS_URL, key_prefix=prefix + "s:")

    config = {
        "name": "crash-worker",
        "transport": {
            "pulsar": {
                "brokerServiceUrl": broker.service_url,
                "brokerFlavor": "pulsar-lite",
                "namespace": namespace,
            }
        },
        "storage": storage_section,
        "redeliveryDelaySeconds": 0.2,
        "services": [
            {
                "name": "BankService",
                "class": "bank.RedisBank",
                "interface": "infinitic_examples.bank_wire.services.BankService",
                "concurrency": 20,
            },
            {
                "name": "EmailService",
                "class": "infinitic_examples.bank_wire.services.PrintingEmails",
                "interface": "infinitic_examples.bank_wire.services.EmailService",
                "concurrency": 20,
            },
        ],
        "workflows": [
            {
                "name": "BankWorkflow",
                "class": "infinitic_examples.bank_wire.workflows.BankWorkflow",
                "concurrency": 20,
            }
        ],
    }
    path = tmp_path / "infinitic.yml"
    path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "BANK_REDIS_URL": REDIS_URL,
        "BANK_PREFIX": prefix + "bank:",
    }
    c = Cluster(broker, path, env, tmp_path / "worker.log", namespace, prefix, open_storage)
    try:
        yield c
    finally:
        c.kill_all()
        await broker.stop()
        await drop_redis_keys(prefix)
        if kind == "postgres":
            await drop_postgres_schema(schema)


async def run_wires(cluster: Cluster, crash: str, *, workers: int = 1) -> dict[str, int]:
    """Dispatch the wires with ``workers`` worker processes, crash ``crash`` (one of the
    workers, or the broker) three times at random moments, check everything."""
    from infinitic.transport_pulsar import PulsarTransport

    rng = random.Random()
    transport = PulsarTransport.for_pulsar_lite(
        cluster.broker.service_url, namespace=cluster.namespace
    )
    bank = RedisBank(REDIS_URL, cluster.prefix + "bank:")
    for _ in range(workers):
        cluster.start_worker()
    try:
        async with InfiniticClient(transport=transport) as client:
            deferreds = [
                await client.dispatch(
                    client.new_workflow(BankWorkflow).wire,
                    f"w{i}",
                    f"acc{i}",
                    f"acc{(i + 1) % WIRES}",
                    7,
                )
                for i in range(WIRES)
            ]
            for _ in range(3):
                await asyncio.sleep(rng.uniform(1.0, 4.0))
                if crash == "worker":
                    cluster.kill_worker(rng.randrange(workers))
                    cluster.start_worker()
                else:
                    await cluster.restart_broker()
            waiting = [asyncio.ensure_future(d.result()) for d in deferreds]
            # Never more than 15 s without a workflow completing: nothing is stuck.
            stalled = await wait_while_progressing(waiting, stall=15.0, limit=150.0)
            if stalled:
                stuck = [d for d, w in zip(deferreds, waiting, strict=True) if not w.done()]
                await describe_stuck(cluster, stuck)
            results = [w.result() for w in waiting]
        for d, r, i in zip(deferreds, results, range(WIRES), strict=True):
            assert r == f"{d.id}:email-w{i}-0"
        balances = await bank.balances()
        done = [k async for k in bank._redis().scan_iter(match=cluster.prefix + "bank:op:*")]
        storage = cluster.open_storage()
        try:
            keys = [state_key("BankWorkflow", d.id) for d in deferreds]
            states = await storage.key_value.get_many(keys)
        finally:
            await storage.close()
    finally:
        await transport.close()
        await bank.close()
    assert balances == {f"acc{i}": 0 for i in range(WIRES)}  # every move made exactly once
    assert len(done) == 2 * WIRES
    assert states == {}  # no workflow left behind
    # pulsar-lite keeps the consumers of a reset connection (a process killed with bytes in
    # flight) until it restarts; the embedded broker restarts itself then (see EmbeddedPulsarLite).
    print(
        f"worker starts: {cluster.starts}, self-healing broker restarts: {cluster.broker.restarts}"
    )
    return {"worker_starts": cluster.starts}


async def wait_while_progressing(
    waiting: list[asyncio.Future[Any]], *, stall: float, limit: float
) -> int:
    """Wait until every future is done, or none completes for ``stall`` seconds; return how
    many are not done."""
    deadline = asyncio.get_running_loop().time() + limit
    pending = {w for w in waiting if not w.done()}
    while pending and asyncio.get_running_loop().time() < deadline:
        done, pending = await asyncio.wait(pending, timeout=stall)
        if not done:
            break
    return len(pending)


async def describe_stuck(cluster: Cluster, stuck: list[Any]) -> None:
    """Fail with what the stored states of the stuck workflows say."""
    storage = cluster.open_storage()
    lines = []
    try:
        for d in stuck[:5]:
            key = state_key("BankWorkflow", d.id)
            stored = await storage.key_value.get(key)
            if stored is None:
                lines.append(f"{d.id}: no state")
                continue
            s = decode_state(key, stored.value)
            commands = [(c.service_name, c.method_name, c.status) for c in s.commands.values()]
            lines.append(
                f"{d.id}: v{stored.version} running={s.running_task_id} steps={len(s.steps)} "
                f"pending={s.pending} commands={commands} failed={s.failed_task}"
            )
    finally:
        await storage.close()
    log = cluster.log.read_text(errors="replace").splitlines()
    errors = [line for line in log if "ERROR" in line or "dead-letter" in line][:10]
    pytest.fail(f"{len(stuck)} workflows stuck:\n" + "\n".join(lines + errors))


@pytest.mark.slow
@pytest.mark.pulsar
@pytest.mark.redis
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "cluster", ["redis", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_worker_killed_three_times(cluster: Cluster) -> None:
    outcome = await run_wires(cluster, "worker")
    assert outcome["worker_starts"] == 4


@pytest.mark.slow
@pytest.mark.pulsar
@pytest.mark.redis
@pytest.mark.timeout(240)
async def test_one_of_two_workers_killed_three_times(cluster: Cluster) -> None:
    # the survivor keeps working, the restarted process joins the same subscriptions
    outcome = await run_wires(cluster, "worker", workers=2)
    assert outcome["worker_starts"] == 5


@pytest.mark.slow
@pytest.mark.pulsar
@pytest.mark.redis
@pytest.mark.timeout(240)
async def test_broker_killed_three_times(cluster: Cluster) -> None:
    await run_wires(cluster, "broker")


GARBAGE = b"\xc1garbage"
UNKNOWN_TYPE = b"\x83\xa1v\x01\xa1t\xa4Nope\xa1b\x80"  # a valid envelope of an unknown type


@pytest.mark.pulsar
@pytest.mark.timeout(120)
async def test_poison_messages_reach_every_dead_letter_topic(
    pulsar_lite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="infinitic.transport_pulsar")
    transport = pulsar_lite_transport(pulsar_lite_url)
    bank, emails = InMemoryBank(), PrintingEmails()
    worker = InfiniticWorker(
        transport=transport, storage=InMemoryStorage(), max_redeliveries=1, redelivery_delay=0.1
    )
    worker.add_service(bank, interface=BankService, concurrency=4)
    worker.add_service(emails, interface=EmailService, concurrency=4)
    worker.add_workflow(BankWorkflow, concurrency=4)
    letters: dict[str, list[TransportMessage]] = {}

    async def collect(message: TransportMessage) -> None:
        letters.setdefault(message.topic, []).append(message)

    try:
        async with worker, InfiniticClient(transport=transport) as client:
            topics = sorted({c._topic for c in worker._consumers})  # type: ignore[attr-defined]
            assert len(topics) >= 10
            for t in topics:
                await transport.publish(t, GARBAGE, key="poison")
                await transport.publish(t, UNKNOWN_TYPE, key="poison")
            results = await asyncio.gather(
                *(client.new_workflow(BankWorkflow).wire(f"w{i}", "a", "b", 1) for i in range(20))
            )
            assert len(set(results)) == 20  # the topics keep flowing
            for t in topics:
                await transport.subscribe(t + "-dlq", "inspect", collect)
            for _ in range(600):
                if sum(len(v) for v in letters.values()) >= 2 * len(topics):
                    break
                await asyncio.sleep(0.05)
    finally:
        await transport.close()
    assert sorted(letters) == [t + "-dlq" for t in topics]
    for t in topics:
        errors = sorted(m.properties[DLQ_ERROR_PROPERTY] for m in letters[t + "-dlq"])
        assert len(errors) == 2, t
        assert "not a msgpack value" in errors[0] or "not a msgpack value" in errors[1], errors
        assert any("unknown message type 'Nope'" in e for e in errors), errors
    logged = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert len(logged) == 2 * len(topics)  # once per poison message, with its reason
    assert all("Error" in r.getMessage() for r in logged)
    assert bank.balances == {"a": -20, "b": 20}
