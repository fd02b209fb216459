"""Storage backends survive transient outages: killed connections, unreachable servers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

from infinitic.exceptions import StorageError
from infinitic.storage import (
    KeyValueStorage,
    MySQLKeyValueStorage,
    PostgresKeyValueStorage,
    RedisKeyValueStorage,
    Storage,
    VersionedValue,
)

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


async def _calls_after_outage(storage: Storage, calls: int = 20) -> int:
    """Run reads and writes after an outage; return how many raised StorageError."""
    errors = 0
    kv, ks = storage.key_value, storage.key_set
    for i in range(calls):
        try:
            current = await kv.get("k")
            assert current is not None
            await kv.put("k", str(i).encode(), expected_version=current.version)
            await ks.add("s", f"m{i}")
            assert await ks.count("s") >= 1
        except StorageError:
            errors += 1
    # and concurrent calls, over every pooled connection
    results = await asyncio.gather(*(kv.get("k") for _ in range(20)), return_exceptions=True)
    errors += sum(isinstance(r, StorageError) for r in results)
    return errors


async def _warm(storage: Storage) -> None:
    """Open the pool and spread several connections through it."""
    await storage.key_value.put("k", b"0")
    await storage.key_set.add("s", "m")
    await asyncio.gather(*(storage.key_value.get("k") for _ in range(10)))


@pytest.mark.parametrize(
    "database", [pytest.param("redis", marks=pytest.mark.redis)], indirect=True
)
async def test_redis_reconnects_after_client_kill(database: Storage) -> None:
    import redis.asyncio as aioredis

    storage = database
    await _warm(storage)
    name = storage.settings.client_name  # type: ignore[attr-defined]
    admin = aioredis.Redis.from_url(REDIS_URL)
    try:
        ids = [c["id"] for c in await admin.client_list() if c.get("name") == name]
        assert ids
        for client_id in ids:
            await admin.client_kill_filter(_id=client_id)
    finally:
        await admin.aclose()
    assert await _calls_after_outage(storage) <= 1
    assert await storage.key_value.get("k") == VersionedValue(b"19", 21)


@pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_postgres_reconnects_after_terminated_backends(database: Storage) -> None:
    import asyncpg

    storage = database
    await _warm(storage)
    app = storage.settings.application_name  # type: ignore[attr-defined]
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        killed = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            app,
        )
    finally:
        await admin.close()
    assert killed
    assert await _calls_after_outage(storage) <= 1
    assert await storage.key_value.get("k") == VersionedValue(b"19", 21)


@pytest.mark.parametrize(
    "database", [pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True
)
async def test_mysql_reconnects_after_killed_connections(database: Storage) -> None:
    import aiomysql

    from infinitic.storage import MySQLSettings

    storage = database
    await _warm(storage)
    pool = storage.key_value._shared._client  # type: ignore[attr-defined]
    ids = [conn.thread_id() for conn in pool._free]
    assert ids
    s = MySQLSettings.from_url(MYSQL_URL)
    admin = await aiomysql.connect(
        host=s.host, port=s.port, user=s.user, password=s.password or "", autocommit=True
    )
    try:
        async with admin.cursor() as cur:
            for thread_id in ids:
                await cur.execute(f"KILL {int(thread_id)}")
    finally:
        admin.close()
    assert await _calls_after_outage(storage) <= 1
    assert await storage.key_value.get("k") == VersionedValue(b"19", 21)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RedisKeyValueStorage.from_url(
            "redis://127.0.0.1:1/0", connect_timeout=0.5, retries=0
        ),
        lambda: PostgresKeyValueStorage.from_url(
            "postgresql://postgres@127.0.0.1:1/none", connect_timeout=0.5
        ),
        lambda: MySQLKeyValueStorage.from_url("mysql://root@127.0.0.1:1/none", connect_timeout=0.5),
    ],
    ids=["redis", "postgres", "mysql"],
)
async def test_unreachable_server_raises_storage_error_naming_the_key(
    make: Callable[[], KeyValueStorage],
) -> None:
    kv = make()
    try:
        for _ in range(2):  # and again: a failed connection is retried on the next call
            with pytest.raises(StorageError, match="'workflow:42'"):
                await kv.get("workflow:42")
            with pytest.raises(StorageError, match="'workflow:42'"):
                await kv.put("workflow:42", b"x", expected_version=0)
    finally:
        await kv.close()


@pytest.mark.parametrize(
    "database",
    [
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
    indirect=True,
)
async def test_closed_storage_raises_and_close_is_idempotent(database: Storage) -> None:
    storage = database
    await storage.key_value.put("k", b"v")
    await storage.close()
    await storage.close()
    with pytest.raises(StorageError, match="closed"):
        await storage.key_value.get("k")
    with pytest.raises(StorageError, match="closed"):
        await storage.key_set.count("k")


@pytest.mark.parametrize(
    "database",
    [
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
    indirect=True,
)
async def test_storage_parts_share_one_pool_until_both_are_closed(database: Storage) -> None:
    storage = database
    await storage.key_value.put("k", b"v")
    await storage.key_value.close()
    await storage.key_set.add("s", "still works")
    assert await storage.key_set.count("s") == 1
    await storage.key_set.close()
    with pytest.raises(StorageError, match="closed"):
        await storage.key_set.count("s")
