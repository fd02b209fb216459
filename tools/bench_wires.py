"""Bank wires per second through a worker and a client in one process.

    python tools/bench_wires.py [--memory-wires 2000] [--pulsar-wires 500]

Stacks: the in-memory transport and storage; pulsar-lite (an embedded broker) with Redis
storage (REDIS_URL, default redis://127.0.0.1:6379/0; skipped when unreachable). Each wire is a
workflow with three sequential tasks (withdraw, deposit, email): 7 workflow-engine messages,
4 workflow tasks and 3 service tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

from infinitic.client import InfiniticClient
from infinitic.storage import InMemoryStorage, Storage
from infinitic.transport import InMemoryTransport, Transport
from infinitic.worker import InfiniticWorker
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def run(transport: Transport, storage: Storage, wires: int, concurrency: int) -> float:
    """Run ``wires`` concurrent wires; return wires per second."""
    bank = InMemoryBank({f"acc{i}": 1000 for i in range(wires)})
    worker = InfiniticWorker(transport=transport, storage=storage)
    worker.add_service(bank, interface=BankService, concurrency=concurrency)
    worker.add_service(PrintingEmails(), interface=EmailService, concurrency=concurrency)
    worker.add_workflow(BankWorkflow, concurrency=concurrency)
    async with worker, InfiniticClient(transport=transport) as client:
        await client.new_workflow(BankWorkflow).wire("warm-up", "acc0", "acc1", 0)
        started = time.perf_counter()
        wf = client.new_workflow(BankWorkflow)
        results = await asyncio.gather(
            *(wf.wire(f"w{i}", f"acc{i}", f"acc{(i + 1) % wires}", 1) for i in range(wires))
        )
        elapsed = time.perf_counter() - started
    assert len(set(results)) == wires
    assert sum(bank.balances.values()) == 1000 * wires
    return wires / elapsed


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1):
            return True
    except OSError:
        return False


async def in_memory(wires: int) -> tuple[str, float]:
    return "in-memory transport + in-memory storage", await run(
        InMemoryTransport(), InMemoryStorage(), wires, 50
    )


async def pulsar_lite_redis(wires: int) -> tuple[str, float]:
    from infinitic.storage import RedisStorage
    from infinitic.transport_pulsar import EmbeddedPulsarLite, PulsarTransport

    name = "pulsar-lite transport + Redis storage"
    if not reachable(REDIS_URL):
        return name + f" (skipped: no Redis at {REDIS_URL})", float("nan")
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    async with AsyncExitStack() as stack:
        broker = await stack.enter_async_context(EmbeddedPulsarLite())
        transport = PulsarTransport.for_pulsar_lite(broker.service_url, namespace="bench")
        stack.push_async_callback(transport.close)
        storage = RedisStorage.from_url(REDIS_URL, key_prefix=prefix)
        stack.push_async_callback(storage.close)
        rate = await run(transport, storage, wires, 50)
    return name, rate


def table(rows: list[tuple[str, int, float]]) -> None:
    print(f"{'stack':<48} {'wires':>7} {'wires/s':>9}")
    for name, wires, rate in rows:
        print(f"{name:<48} {wires:>7} {rate:>9.0f}")


async def main(memory_wires: int, pulsar_wires: int) -> None:
    benches: list[tuple[Callable[[int], Any], int]] = [
        (in_memory, memory_wires),
        (pulsar_lite_redis, pulsar_wires),
    ]
    rows = []
    for bench, wires in benches:
        name, rate = await bench(wires)
        rows.append((name, wires, rate))
    table(rows)


if __name__ == "__main__":
    logging.getLogger("infinitic.transport_pulsar.client").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory-wires", type=int, default=2000)
    parser.add_argument("--pulsar-wires", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.memory_wires, args.pulsar_wires))
