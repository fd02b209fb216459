"""The client process of the message-path benchmark (started by tools/bench_path.py).

    python tools/bench_path_client.py --config infinitic.yml --wires 1000 --sequential 50
    python tools/bench_path_client.py --in-memory --wires 2000 --sequential 50

With ``--config`` it is a client only (``InfiniticClient.from_yaml``; the workers run in other
processes); with ``--in-memory`` it runs a worker and a client on one in-memory transport and
storage, and counts the messages published and the storage operations itself.

It talks to the benchmark through JSON lines on stdout and commands on stdin, so the benchmark
can read every process's counters around each phase:

1. warm-up, then ``{"event": "ready"}``;
2. on ``concurrent``: dispatch every wire, await every result, then ``{"event": "concurrent"}``;
3. on ``sequential``: the wires one at a time, then ``{"event": "sequential"}``;
4. on ``quit`` (or end of input): close and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bench_path_services import QuietBank, QuietEmails
from infinitic.client import InfiniticClient, load_yaml
from infinitic.common import read_workflow_state
from infinitic.storage import (
    InMemoryKeySetStorage,
    InMemoryKeyValueStorage,
    KeyValueStorage,
    RedisKeyValueStorage,
    RedisSettings,
    Storage,
    VersionedValue,
)
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker, WorkerMetrics
from infinitic_examples.bank_wire.services import BankService, EmailService
from infinitic_examples.bank_wire.workflows import BankWorkflow


class CountingKeyValueStorage(KeyValueStorage):
    """In-memory key-value storage counting reads and writes and the bytes it holds (the
    in-memory stack has no server to ask)."""

    def __init__(self) -> None:
        self._inner = InMemoryKeyValueStorage()
        self.reads = 0
        self.writes = 0
        self.sizes: dict[str, int] = {}

    async def get(self, key: str) -> VersionedValue | None:
        self.reads += 1
        return await self._inner.get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, VersionedValue]:
        self.reads += 1
        return await self._inner.get_many(keys)

    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        self.writes += 1
        version = await self._inner.put(key, value, expected_version=expected_version)
        self.sizes[key] = len(value)
        return version

    async def put_many(self, items: Mapping[str, bytes]) -> None:
        self.writes += 1
        await self._inner.put_many(items)
        self.sizes.update((k, len(v)) for k, v in items.items())

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        self.writes += 1
        await self._inner.delete(key, expected_version=expected_version)
        self.sizes.pop(key, None)


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def command() -> str:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip() or "quit"


class Stalls:
    """Says, on stderr (the client's log), which wires have waited for their result longer
    than ``seconds``, each with its stored state when the workers' storage is Redis: a wire
    that never ends is a bug to see, not a phase that only times out."""

    def __init__(self, seconds: float, config: str | None) -> None:
        self.seconds = seconds
        self.pending: dict[str, tuple[str, float]] = {}  # workflow id -> (wire, dispatched)
        self._kv: RedisKeyValueStorage | None = None
        if config is not None:
            redis = (load_yaml(config).get("storage") or {}).get("redis")
            if redis and redis.get("url"):
                # the workers' prefix when their file sets one, else RedisSettings' default
                prefix = {"key_prefix": redis["keyPrefix"]} if "keyPrefix" in redis else {}
                self._kv = RedisKeyValueStorage(RedisSettings(url=redis["url"], **prefix))

    async def close(self) -> None:
        if self._kv is not None:
            await self._kv.close()

    async def watch(self) -> None:
        reported: set[str] = set()
        while True:
            await asyncio.sleep(self.seconds / 4)
            now = time.perf_counter()
            for workflow_id, (wire, since) in list(self.pending.items()):
                if workflow_id in reported or now - since < self.seconds:
                    continue
                reported.add(workflow_id)
                state: Any = "(no storage to read)"
                if self._kv is not None:
                    try:
                        state = await read_workflow_state(self._kv, "BankWorkflow", workflow_id)
                    except Exception as e:
                        state = f"unreadable: {e!r}"
                print(
                    f"STALLED wire {wire} workflow {workflow_id}: no result after "
                    f"{now - since:.0f} s; state: {json.dumps(state, default=str)}",
                    file=sys.stderr,
                    flush=True,
                )


async def one_wire(client: InfiniticClient, stalls: Stalls, wire_id: str, i: int) -> float:
    """Dispatch one wire and await its result; return its latency in seconds."""
    started = time.perf_counter()
    wf = client.new_workflow(BankWorkflow)
    deferred = await client.dispatch(wf.wire, wire_id, f"acc-{i}", f"acc-{i + 1}", 1)
    stalls.pending[deferred.id] = (wire_id, started)
    try:
        result = await deferred
    finally:
        stalls.pending.pop(deferred.id, None)
    elapsed = time.perf_counter() - started
    if not result.startswith(f"{deferred.id}:email-{wire_id}-"):
        raise AssertionError(f"wire {wire_id}: unexpected result {result!r}")
    return elapsed


async def concurrent(
    client: InfiniticClient, stalls: Stalls, label: str, wires: int
) -> dict[str, Any]:
    """Dispatch ``wires`` wires at once and await them all."""
    started = time.perf_counter()
    outcomes = await asyncio.gather(
        *(one_wire(client, stalls, f"{label}-{i}", i) for i in range(wires)), return_exceptions=True
    )
    elapsed = time.perf_counter() - started
    return summary(outcomes, elapsed)


async def sequential(
    client: InfiniticClient, stalls: Stalls, label: str, wires: int
) -> dict[str, Any]:
    """Run ``wires`` wires one after the other."""
    outcomes: list[float | BaseException] = []
    started = time.perf_counter()
    for i in range(wires):
        try:
            outcomes.append(await one_wire(client, stalls, f"{label}-{i}", i))
        except Exception as e:
            outcomes.append(e)
    return summary(outcomes, time.perf_counter() - started)


def summary(outcomes: Sequence[float | BaseException], elapsed: float) -> dict[str, Any]:
    latencies = [x for x in outcomes if isinstance(x, float)]
    errors = [f"{type(x).__name__}: {x}"[:300] for x in outcomes if isinstance(x, BaseException)]
    return {
        "elapsed": elapsed,
        "latencies": latencies,
        "errors": len(errors),
        "first_errors": sorted(set(errors))[:5],
    }


class Sampler:
    """Samples the states held by a counting storage while a phase runs."""

    def __init__(self, kv: CountingKeyValueStorage) -> None:
        self._kv = kv
        self.samples: list[tuple[int, int]] = []  # (values stored, bytes)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self.samples.append((len(self._kv.sizes), sum(self._kv.sizes.values())))


async def main(args: argparse.Namespace) -> None:
    worker: InfiniticWorker | None = None
    kv: CountingKeyValueStorage | None = None
    transport: InMemoryTransport | None = None
    if args.in_memory:
        transport, kv = InMemoryTransport(), CountingKeyValueStorage()
        # INFINITIC__METRICS__PORT (set for the worker processes' configuration) turns the
        # in-memory worker's metrics on too, without an endpoint.
        metrics = WorkerMetrics(port=None) if "INFINITIC__METRICS__PORT" in os.environ else None
        worker = InfiniticWorker(
            transport=transport,
            storage=Storage(kv, InMemoryKeySetStorage()),
            metrics=metrics,
            # INFINITIC__EVENTS=false (the worker processes' key) turns events off here too
            events=os.environ.get("INFINITIC__EVENTS", "true").lower() != "false",
            # the worker processes' INFINITIC__WORKFLOW_TASK_ISOLATION (auto, thread, loop)
            workflow_task_isolation=os.environ.get("INFINITIC__WORKFLOW_TASK_ISOLATION", "auto"),
        )
        worker.add_service(QuietBank(), interface=BankService, concurrency=args.concurrency)
        worker.add_service(QuietEmails(), interface=EmailService, concurrency=args.concurrency)
        worker.add_workflow(BankWorkflow, concurrency=args.concurrency)
        await worker.start()
        if not args.default_gc:
            # What README ("Running workers") advises an application embedding a worker, and
            # what the ``infinitic worker`` command does for the other stacks' workers.
            gc.collect()
            gc.freeze()
            gc.set_threshold(20_000, 20, 20)
        client = InfiniticClient(transport=transport)
    else:
        client = InfiniticClient.from_yaml(args.config)

    def counters() -> dict[str, int]:
        if kv is None or transport is None:
            return {}
        return {"messages": transport.published_count, "reads": kv.reads, "writes": kv.writes}

    stalls = Stalls(args.stall_seconds, args.config)
    watching = asyncio.create_task(stalls.watch())
    try:
        async with client:
            warm = await concurrent(client, stalls, "warm", args.warmup)
            warm_seq = await sequential(client, stalls, "warm-seq", min(args.warmup, 10))
            emit("ready", errors=warm["errors"] + warm_seq["errors"], counters=counters())
            while (what := await command()) != "quit":
                if what == "concurrent":
                    sampler = Sampler(kv) if kv is not None else None
                    sampling = asyncio.create_task(sampler.run()) if sampler else None
                    result = await concurrent(client, stalls, "wire", args.wires)
                    if sampling is not None:
                        sampling.cancel()
                    samples = sampler.samples if sampler else []
                    emit("concurrent", **result, counters=counters(), samples=samples)
                elif what == "sequential":
                    emit("sequential", **await sequential(client, stalls, "seq", args.sequential))
                else:
                    emit("error", message=f"unknown command {what!r}")
    finally:
        watching.cancel()
        await stalls.close()
        if worker is not None:
            await worker.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", help="the workers' YAML file (its transport section is read)")
    where.add_argument("--in-memory", action="store_true", help="run a worker in this process")
    parser.add_argument("--wires", type=int, default=1000)
    parser.add_argument("--sequential", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=50, help="in-memory worker only")
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=60.0,
        help="report (on stderr) a wire without a result after this long, with its state",
    )
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="in-memory worker only: keep CPython's garbage-collector settings (without it, "
        "the worker's settings of README's 'Running workers')",
    )
    asyncio.run(main(parser.parse_args()))
