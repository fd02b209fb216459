"""Benchmark: read + compare-and-set write per second on each storage backend.

One operation is what a state engine does per message: ``get`` a state, then ``put`` it back with
``expected_version`` set to the version read. Several workers run at once, each on its own keys
(no conflicts), for a fixed time per case. Values look like workflow states (JSON-like text with
random ids), so zstd has something to do without being trivial.

Run: ``uv run python tools/bench_storage.py [--seconds 1.5] [--concurrency 8]``. Backends whose
server is unreachable (REDIS_URL, POSTGRES_URL, MYSQL_URL, loopback defaults) are skipped. Every
case uses its own Redis key prefix, PostgreSQL schema or MySQL database, removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from infinitic.storage import (
    CompressedKeyValueStorage,
    InMemoryStorage,
    KeyValueStorage,
    Storage,
)

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
SIZES = {"1 KiB": 1024, "64 KiB": 64 * 1024}
PORTS = {"redis": 6379, "postgresql": 5432, "mysql": 3306}


@dataclass
class Result:
    backend: str
    size: str
    compression: str
    ops_per_second: float
    p50_ms: float
    p99_ms: float
    stored_ratio: float


def state_like_value(size: int, rng: random.Random) -> bytes:
    """JSON-ish bytes of ``size``: repeated structure, random ids and numbers."""
    parts: list[str] = []
    length = 0
    while length < size:
        item = (
            f'{{"taskId":"{uuid.UUID(int=rng.getrandbits(128))}","method":"withdraw",'
            f'"amount":{rng.randint(0, 10**6)},"status":"completed"}},'
        )
        parts.append(item)
        length += len(item)
    return ("[" + "".join(parts))[:size].encode()


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or PORTS.get(parts.scheme, 0)), 1.0
        ):
            return True
    except OSError:
        return False


async def open_storage(backend: str, run_id: str) -> tuple[Storage, Callable[[], Awaitable[None]]]:
    """Return a fresh storage and a coroutine function removing its data."""
    if backend == "memory":

        async def nothing() -> None:
            return None

        return InMemoryStorage(), nothing
    if backend == "redis":
        import redis.asyncio as aioredis

        from infinitic.storage import RedisStorage

        prefix = f"bench-{run_id}:"

        async def drop_redis() -> None:
            client = aioredis.Redis.from_url(REDIS_URL)
            keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()

        return RedisStorage.from_url(REDIS_URL, key_prefix=prefix), drop_redis
    if backend == "postgres":
        import asyncpg

        from infinitic.storage import PostgresStorage

        schema = f"bench_{run_id}"

        async def drop_schema() -> None:
            conn = await asyncpg.connect(POSTGRES_URL)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()

        storage = PostgresStorage.from_url(POSTGRES_URL, schema=schema, max_pool_size=16)
        return storage, drop_schema
    if backend == "mysql":
        import aiomysql

        from infinitic.storage import MySQLSettings, MySQLStorage

        settings = MySQLSettings.from_url(MYSQL_URL, database=f"bench_{run_id}", max_pool_size=16)

        async def drop_database() -> None:
            conn = await aiomysql.connect(
                host=settings.host,
                port=settings.port,
                user=settings.user,
                password=settings.password.get_secret_value() if settings.password else "",
                autocommit=True,
            )
            async with conn.cursor() as cur:
                await cur.execute(f"DROP DATABASE IF EXISTS `{settings.database}`")
            conn.close()

        return MySQLStorage(settings), drop_database
    raise ValueError(backend)


async def measure(
    kv: KeyValueStorage, raw: KeyValueStorage, value: bytes, seconds: float, concurrency: int
) -> tuple[float, list[float], float]:
    """Run get + compare-and-set loops; return ops/s, latencies and stored/original size."""
    keys = [f"bench:{uuid.uuid4().hex}" for _ in range(concurrency)]
    for key in keys:
        await kv.put(key, value)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(key: str) -> int:
        done = 0
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            current = await kv.get(key)
            assert current is not None
            await kv.put(key, value, expected_version=current.version)
            latencies.append(time.perf_counter() - start)
            done += 1
        return done

    began = time.perf_counter()
    counts = await asyncio.gather(*(worker(k) for k in keys))
    elapsed = time.perf_counter() - began
    stored = await raw.get(keys[0])
    assert stored is not None
    return sum(counts) / elapsed, latencies, len(stored.value) / len(value)


async def run_case(
    backend: str, size: str, compression: str, seconds: float, concurrency: int
) -> Result:
    storage, drop = await open_storage(backend, uuid.uuid4().hex[:10])
    try:
        raw = storage.key_value
        kv: KeyValueStorage = raw
        if compression == "zstd":
            kv = CompressedKeyValueStorage(raw, "zstd")
        value = state_like_value(SIZES[size], random.Random(42))
        ops, latencies, ratio = await measure(kv, raw, value, seconds, concurrency)
    finally:
        await storage.close()
        await drop()
    quantiles = statistics.quantiles(latencies, n=100)
    return Result(backend, size, compression, ops, quantiles[49] * 1e3, quantiles[98] * 1e3, ratio)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="duration of each case")
    parser.add_argument("--concurrency", type=int, default=8, help="workers at once")
    args = parser.parse_args()

    backends = ["memory"]
    for name, url in (("redis", REDIS_URL), ("postgres", POSTGRES_URL), ("mysql", MYSQL_URL)):
        if reachable(url):
            backends.append(name)
        else:
            print(f"skipping {name}: nothing answers at {url}")

    print(
        f"get + compare-and-set put, {args.concurrency} concurrent workers, "
        f"{args.seconds}s per case\n"
    )
    header = (
        f"{'backend':<9} {'value':>7} {'compr.':>6} {'ops/s':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'stored':>7}"
    )
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for backend in backends:
        for size in SIZES:
            for compression in ("none", "zstd"):
                r = await run_case(backend, size, compression, args.seconds, args.concurrency)
                print(
                    f"{r.backend:<9} {r.size:>7} {r.compression:>6} {r.ops_per_second:>9,.0f} "
                    f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.stored_ratio:>6.0%}",
                    flush=True,
                )
    print(f"\ntotal {time.perf_counter() - started:.1f}s; 'stored' is stored size / value size")


if __name__ == "__main__":
    asyncio.run(main())
