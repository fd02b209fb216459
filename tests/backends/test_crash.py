"""Crash safety with real processes: a worker (the ``infinitic`` command line, in its own
process, on pulsar-lite with Redis or PostgreSQL; alone or beside a second one) or the broker
is SIGKILLed at random moments and restarted while 500 bank wires run; every workflow
completes once with the right result and none stalls (the test never restarts the broker
itself: the embedded broker heals itself). Poison messages on every topic end in its
dead-letter twin while wires keep flowing. The process cluster and the wire runs are the chaos
tool's (tools/chaos_cluster.py, tools/chaos_wires.py)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chaos_cluster import WorkerCluster
from chaos_wires import FaultPlan, WireReport, run_wires
from infinitic.client import InfiniticClient
from infinitic.storage import InMemoryStorage, PostgresStorage, RedisStorage, Storage
from infinitic.transport import DLQ_ERROR_PROPERTY, TransportMessage
from infinitic.worker import InfiniticWorker
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow

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

WIRES = 500


@pytest.fixture
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[WorkerCluster]:
    """A broker and a worker configuration (tools/chaos_cluster.py); the workflow states go to
    Redis, or to the storage named by an indirect parameter (``postgres``). The bank is in
    Redis."""
    kind = getattr(request, "param", "redis")
    require("Redis", REDIS_URL)
    if kind == "postgres":
        require("PostgreSQL", POSTGRES_URL)
    prefix = unique("infinitic-crash") + ":"
    schema = prefix.rstrip(":").replace("-", "_")

    def open_storage() -> Storage:
        if kind == "postgres":
            return PostgresStorage.from_url(POSTGRES_URL, schema=schema)
        return RedisStorage.from_url(REDIS_URL, key_prefix=prefix + "s:")

    storage = (
        {"postgres": {"url": POSTGRES_URL, "schema": schema}}
        if kind == "postgres"
        else {"redis": {"url": REDIS_URL, "keyPrefix": prefix + "s:"}}
    )
    try:
        c = await WorkerCluster.start(
            tmp_path,
            storage=storage,
            open_storage=open_storage,
            bank_url=REDIS_URL,
            bank_prefix=prefix + "bank:",
        )
    except (ImportError, OSError, RuntimeError) as e:
        unavailable(f"cannot start pulsar-lite: {e}")
        return
    try:
        yield c
    finally:
        await c.close()
        await drop_redis_keys(prefix)
        if kind == "postgres":
            await drop_postgres_schema(schema)


async def run_crashes(
    cluster: WorkerCluster, *, workers: int = 1, worker_kills: int = 0, broker_kills: int = 0
) -> WireReport:
    """Run the wires with ``workers`` worker processes while workers or the broker crash at
    random moments (tools/chaos_wires.py); every workflow must complete once with the right
    result and money moves, leave no state behind, and none may stall for 15 s."""
    report = await run_wires(
        cluster,
        label="crash",
        wires=WIRES,
        workers=workers,
        plan=FaultPlan(worker_kills=worker_kills, broker_kills=broker_kills),
        seed=random.randrange(1_000_000),
        stall=15.0,
        max_seconds=150.0,
    )
    problems = (report.stuck, report.lost, report.wrong, report.leftover_states)
    details = [f"seed {report.seed}: stuck, lost, wrong, left states: {problems}"]
    assert problems == (0, 0, 0, 0), "\n".join(details + report.details)
    assert report.completed == WIRES
    assert report.faults == worker_kills + broker_kills
    # pulsar-lite keeps the consumers of a reset connection (a process killed with bytes in
    # flight) until it restarts; the embedded broker restarts itself then (see EmbeddedPulsarLite).
    print(f"worker starts: {report.worker_starts}, broker self-heals: {report.broker_heals}")
    return report


@pytest.mark.slow
@pytest.mark.pulsar
@pytest.mark.redis
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "cluster", ["redis", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_worker_killed_three_times(cluster: WorkerCluster) -> None:
    report = await run_crashes(cluster, worker_kills=3)
    assert report.worker_starts == 4


@pytest.mark.slow
@pytest.mark.pulsar
@pytest.mark.redis
@pytest.mark.timeout(240)
async def test_one_of_two_workers_killed_three_times(cluster: WorkerCluster) -> None:
    # the survivor keeps working, the restarted process joins the same subscriptions
    report = await run_crashes(cluster, workers=2, worker_kills=3)
    assert report.worker_starts == 5


@pytest.mark.slow
@pytest.mark.pulsar
@pytest.mark.redis
@pytest.mark.timeout(240)
async def test_broker_killed_three_times(cluster: WorkerCluster) -> None:
    await run_crashes(cluster, broker_kills=3)


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
