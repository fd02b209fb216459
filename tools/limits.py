"""Limits of Infinitic for Python, measured (issue 15): ``make limits`` runs the heavy forms.

Scenarios, each through the public API (a worker and a client, real messages):

- ``argument``: one workflow argument of growing size (1, 4, 6, 20 MB) sent by a client;
- ``state``: a workflow whose history grows by large task results, on one storage backend;
- ``properties``: a workflow instance with 10,000 properties kept across steps;
- ``recursion``: a workflow calling itself as a child N levels deep;
- ``commands``: a workflow of 100,000 commands (``inline()`` calls in one step, or tasks).

Each scenario runs under a deadline and reports what happened (a result, or the error type and
its message), the time and the peak RSS of this process. ``python tools/limits.py SCENARIO
--help`` lists the options; run one scenario per process for a meaningful peak RSS. The short
forms run in CI (``tests/limits``).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from infinitic.client import InfiniticClient
from infinitic.storage import InMemoryStorage, Storage
from infinitic.transport import InMemoryTransport, Transport
from infinitic.worker import InfiniticWorker
from infinitic.workflows import Workflow, inline, new_service, new_workflow

MB = 1024 * 1024


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Outcome:
    """What one run of a scenario did."""

    label: str
    ok: bool
    detail: str
    seconds: float
    peak_rss_mb: float

    def line(self) -> str:
        status = "ok" if self.ok else "error"
        return (
            f"{self.label:<34} {status:<5} {self.seconds:8.2f} s {self.peak_rss_mb:8.0f} MB  "
            f"{self.detail[:300]}"
        )


async def measure(label: str, run: Awaitable[Any], deadline: float) -> Outcome:
    """Run ``run`` under ``deadline`` seconds; an exception is an outcome, a timeout too."""
    start = time.perf_counter()
    try:
        async with asyncio.timeout(deadline):
            value = await run
        ok, detail = True, repr(value)
    except TimeoutError:
        ok, detail = False, f"HANG: no answer within {deadline:g} s"
    except Exception as e:
        ok, detail = False, f"{type(e).__name__}: {e}"
    return Outcome(label, ok, detail, time.perf_counter() - start, peak_rss_mb())


# --- the workflows and services ------------------------------------------------------------


class Blobs(Protocol):
    async def make(self, size: int, tag: int) -> bytes: ...

    async def noop(self, i: int) -> int: ...


class BlobsImpl:
    async def make(self, size: int, tag: int) -> bytes:
        return bytes([tag % 128]) * size  # ASCII: a payload of bytes must be UTF-8 text

    async def noop(self, i: int) -> int:
        return i


class Limits(Workflow):
    blobs = new_service(Blobs)

    async def take(self, data: bytes) -> int:
        return len(data)

    async def grow(self, steps: int, size: int) -> int:
        """``steps`` tasks each returning ``size`` bytes, every result kept in the history."""
        total = 0
        for i in range(steps):
            total += len(await self.blobs.make(size, i))
        return total

    async def properties(self, count: int) -> int:
        """``count`` properties set in one step, read back after a task (another step)."""
        for i in range(count):
            setattr(self, f"p{i}", i)
        await self.blobs.noop(0)
        return sum(getattr(self, f"p{i}") for i in range(count))

    async def inlines(self, count: int) -> int:
        """``count`` inline() commands in one workflow task."""
        total = 0
        for i in range(count):
            total += await inline(lambda i=i: i)  # type: ignore[misc]
        return total

    async def tasks(self, count: int, batch: int) -> int:
        """``count`` tasks, ``batch`` of them in parallel at a time."""
        total = 0
        for start in range(0, count, batch):
            stop = min(count, start + batch)
            results = await asyncio.gather(*[self.blobs.noop(i) for i in range(start, stop)])
            total += sum(results)
        return total

    async def down(self, depth: int) -> int:
        """A child of itself ``depth`` levels deep; returns the depth reached."""
        if depth <= 0:
            return 0
        return 1 + await new_workflow(Limits).down(depth - 1)


@asynccontextmanager
async def running(
    transport: Transport, storage: Storage, **options: Any
) -> AsyncIterator[InfiniticClient]:
    """A worker with ``Limits`` and ``Blobs`` on ``transport`` and ``storage``, and a client."""
    options = {"max_redeliveries": 1, "redelivery_delay": 0.05, **options}
    worker = InfiniticWorker(transport=transport, storage=storage, **options)
    worker.add_service(BlobsImpl(), interface=Blobs, name="Blobs", concurrency=20)
    worker.add_workflow(Limits, concurrency=20)
    async with worker, InfiniticClient(transport=transport) as client:
        yield client


# --- the scenarios ---------------------------------------------------------------------------


async def argument_sizes(
    transport: Transport, storage: Storage, sizes_mb: list[float], deadline: float
) -> list[Outcome]:
    """A client call with one argument of each size: accepted, or refused with a clear error."""
    outcomes = []
    async with running(transport, storage) as client:
        for size in sizes_mb:
            data = b"a" * int(size * MB)
            run = client.new_workflow(Limits).take(data)
            outcomes.append(await measure(f"argument {size:g} MB", run, deadline))
    return outcomes


async def growing_state(
    transport: Transport,
    storage: Storage,
    steps: int,
    size_mb: float,
    deadline: float,
    history_chunk_steps: int = 64,
) -> Outcome:
    """A workflow of ``steps`` tasks each returning ``size_mb`` MB (the state or its archived
    chunks grow by that much a step)."""
    async with running(transport, storage, history_chunk_steps=history_chunk_steps) as client:
        run = client.new_workflow(Limits).grow(steps, int(size_mb * MB))
        label = f"state {steps} x {size_mb:g} MB chunk={history_chunk_steps}"
        return await measure(label, run, deadline)


async def many_properties(
    transport: Transport, storage: Storage, count: int, deadline: float, **options: Any
) -> Outcome:
    async with running(transport, storage, **options) as client:
        run = client.new_workflow(Limits).properties(count)
        return await measure(f"properties {count:,}", run, deadline)


async def recursion(
    transport: Transport, storage: Storage, depth: int, deadline: float, **options: Any
) -> Outcome:
    async with running(transport, storage, **options) as client:
        run = client.new_workflow(Limits).down(depth)
        return await measure(f"recursion depth {depth:,}", run, deadline)


async def many_commands(
    transport: Transport,
    storage: Storage,
    kind: str,
    count: int,
    batch: int,
    deadline: float,
    **options: Any,
) -> Outcome:
    async with running(transport, storage, **options) as client:
        stub = client.new_workflow(Limits)
        run = stub.inlines(count) if kind == "inline" else stub.tasks(count, batch)
        return await measure(f"{kind} commands {count:,}", run, deadline)


# --- the command line --------------------------------------------------------------------------


async def open_storage(name: str) -> tuple[Storage, Callable[[], Awaitable[None]]]:
    """A storage on backend ``name`` (memory, redis, postgres, mysql) in a namespace of its
    own (REDIS_URL, POSTGRES_URL, MYSQL_URL or loopback), and how to drop it."""
    import uuid

    from infinitic.storage.testing import service_url

    token = f"limits_{uuid.uuid4().hex[:10]}"
    url = service_url(name) if name != "memory" else ""
    if name == "redis":
        import redis.asyncio as aioredis

        from infinitic.storage import RedisStorage

        storage: Storage = RedisStorage.from_url(url, key_prefix=token + ":")

        async def drop() -> None:
            client = aioredis.Redis.from_url(url)
            keys = [k async for k in client.scan_iter(match=token + ":*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()

    elif name == "postgres":
        import asyncpg

        from infinitic.storage import PostgresStorage

        storage = PostgresStorage.from_url(url, schema=token)

        async def drop() -> None:
            conn = await asyncpg.connect(url)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{token}" CASCADE')
            await conn.close()

    elif name == "mysql":
        from infinitic.storage import MySQLStorage

        storage = MySQLStorage.from_url(url, database=token)

        async def drop() -> None:
            import aiomysql

            from infinitic.storage import MySQLSettings

            s = MySQLSettings.from_url(url)
            password = getattr(s.password, "get_secret_value", lambda: s.password or "")()
            conn = await aiomysql.connect(
                host=s.host, port=s.port, user=s.user, password=password, autocommit=True
            )
            async with conn.cursor() as cur:
                await cur.execute(f"DROP DATABASE IF EXISTS `{token}`")
            conn.close()

    else:
        storage = InMemoryStorage()

        async def drop() -> None:
            return None

    async def close() -> None:
        await storage.close()
        await drop()

    return storage, close


async def open_transport(name: str) -> tuple[Transport, Callable[[], None]]:
    if name == "memory":
        return InMemoryTransport(), lambda: None
    import uuid

    from infinitic.transport_pulsar import EmbeddedPulsarLite, PulsarTransport

    broker = EmbeddedPulsarLite()
    await broker.start()
    transport = PulsarTransport.for_pulsar_lite(
        broker.service_url, namespace=f"limits-{uuid.uuid4().hex[:8]}"
    )
    return transport, broker.stop_blocking


# The heavy forms ``make limits`` runs, one process each (a meaningful peak RSS).
ALL = [
    ["argument"],
    ["argument", "--transport", "pulsar-lite"],
    *(
        ["state", "--storage", db, "--steps", "10", "--size", "4", "--chunk", "0"]
        for db in ("memory", "redis", "postgres", "mysql")
    ),
    ["state", "--storage", "postgres", "--steps", "30", "--size", "4", "--chunk", "0"],
    ["state", "--storage", "redis", "--steps", "30", "--size", "4", "--chunk", "0"],
    ["properties", "--count", "10000"],
    ["properties", "--count", "10000", "--cache", "0"],
    ["recursion", "--depth", "1000"],
    ["recursion", "--depth", "1000", "--transport", "pulsar-lite"],
    ["commands", "--kind", "inline", "--count", "100000"],
    ["commands", "--kind", "inline", "--count", "100000", "--cache", "0"],
    ["commands", "--kind", "tasks", "--count", "100000", "--batch", "100"],
    ["commands", "--kind", "tasks", "--count", "100000", "--batch", "100", "--no-events"],
]


def run_all() -> int:
    """Every heavy form in its own process; fails when one hangs or crashes."""
    import subprocess

    failed = 0
    for args in ALL:
        done = subprocess.run(
            [sys.executable, __file__, *args], capture_output=True, text=True, check=False
        )
        lines = [line for line in done.stdout.splitlines() if "+" in line.split(" ", 1)[0]]
        print("\n".join(lines) or f"{' '.join(args)}: exit {done.returncode}", flush=True)
        if done.returncode != 0 or any("HANG" in line for line in lines):
            failed += 1
            print(done.stderr[-2000:], file=sys.stderr)
    return 1 if failed else 0


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "scenario", choices=["argument", "state", "properties", "recursion", "commands", "all"]
    )
    parser.add_argument("--transport", default="memory", choices=["memory", "pulsar-lite"])
    parser.add_argument(
        "--storage", default="memory", choices=["memory", "redis", "postgres", "mysql"]
    )
    parser.add_argument("--sizes", default="1,4,6,20", help="argument sizes in MB")
    parser.add_argument("--steps", type=int, default=10, help="state: tasks")
    parser.add_argument("--size", type=float, default=4.0, help="state: MB per task result")
    parser.add_argument("--chunk", type=int, default=64, help="state: history_chunk_steps")
    parser.add_argument("--count", type=int, default=10_000, help="properties or commands")
    parser.add_argument("--kind", default="inline", choices=["inline", "tasks"])
    parser.add_argument("--batch", type=int, default=1000, help="commands: tasks in parallel")
    parser.add_argument("--depth", type=int, default=200)
    parser.add_argument("--cache", type=int, default=10_000, help="workflow_cache_size")
    parser.add_argument("--deadline", type=float, default=600.0)
    parser.add_argument(
        "--no-events",
        action="store_true",
        help="events=False (the in-memory transport keeps "
        "the events topics' backlog, which nothing reads)",
    )
    args = parser.parse_args(argv)
    if args.scenario == "all":
        return run_all()
    transport, stop_broker = await open_transport(args.transport)
    storage, close_storage = await open_storage(args.storage)
    options: dict[str, Any] = {"workflow_cache_size": args.cache, "events": not args.no_events}
    await transport.start()
    try:
        if args.scenario == "argument":
            sizes = [float(s) for s in args.sizes.split(",")]
            outcomes = await argument_sizes(transport, storage, sizes, args.deadline)
        elif args.scenario == "state":
            outcomes = [
                await growing_state(
                    transport, storage, args.steps, args.size, args.deadline, args.chunk
                )
            ]
        elif args.scenario == "properties":
            run = many_properties(transport, storage, args.count, args.deadline, **options)
            outcomes = [await run]
        elif args.scenario == "recursion":
            outcomes = [await recursion(transport, storage, args.depth, args.deadline, **options)]
        else:
            run = many_commands(
                transport, storage, args.kind, args.count, args.batch, args.deadline, **options
            )
            outcomes = [await run]
    finally:
        await transport.close()
        await close_storage()
        stop_broker()
    where = f"{args.transport}+{args.storage}"
    for outcome in outcomes:
        print(f"{where:<22} {outcome.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
