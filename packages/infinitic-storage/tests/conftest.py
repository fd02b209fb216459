"""Fixtures running the storage contract against every backend.

Service URLs come from REDIS_URL, POSTGRES_URL and MYSQL_URL (loopback defaults). An unreachable
service skips its tests, or fails them when the CI variable is set. Each test gets its own Redis
key prefix, PostgreSQL schema or MySQL database, removed afterwards.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from infinitic.storage import (
    CompressedKeyValueStorage,
    InMemoryKeySetStorage,
    InMemoryKeyValueStorage,
    KeySetStorage,
    KeyValueStorage,
    Storage,
)
from infinitic.storage.testing import service_url

REDIS_URL = service_url("redis")
POSTGRES_URL = service_url("postgres")
MYSQL_URL = service_url("mysql")

_DEFAULT_PORTS = {"redis": 6379, "postgresql": 5432, "postgres": 5432, "mysql": 3306}


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require(service: str, url: str) -> str:
    """Return ``url``, or skip (fail under CI) when the service does not answer."""
    if not _reachable(url):
        message = f"{service} is not reachable at {url}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is an error)")
        pytest.skip(message)
    return url


def unique(prefix: str) -> str:
    """A name no other test run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def drop_redis_keys(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def drop_postgres_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def drop_mysql_database(url: str, database: str) -> None:
    import aiomysql

    from infinitic.storage import MySQLSettings

    s = MySQLSettings.from_url(url)
    conn = await aiomysql.connect(
        host=s.host, port=s.port, user=s.user, password=s.password or "", autocommit=True
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        conn.close()


async def open_backend(name: str) -> tuple[Storage, object]:
    """Return a fresh storage for backend ``name`` and what its cleanup needs."""
    if name in ("redis", "redis-unpipelined"):
        from infinitic.storage import RedisStorage

        url = require("Redis", REDIS_URL)
        prefix = unique("infinitic-test") + ":"
        storage = RedisStorage.from_url(
            url,
            key_prefix=prefix,
            client_name=prefix[:-1],
            auto_pipelining=name == "redis",
        )
        return storage, prefix
    if name in ("postgres", "postgres-unbatched"):
        from infinitic.storage import PostgresStorage

        url = require("PostgreSQL", POSTGRES_URL)
        schema = unique("t")
        app = unique("infinitic_test")
        storage = PostgresStorage.from_url(
            url, schema=schema, application_name=app, auto_batching=name == "postgres"
        )
        return storage, schema
    if name in ("mysql", "mysql-unbatched"):
        from infinitic.storage import MySQLStorage

        url = require("MySQL", MYSQL_URL)
        database = unique("t")
        return MySQLStorage.from_url(
            url, database=database, auto_batching=name == "mysql"
        ), database
    raise ValueError(name)


async def cleanup_backend(name: str, storage: Storage, token: object) -> None:
    await storage.close()
    if name.startswith("redis"):
        await drop_redis_keys(REDIS_URL, str(token))
    elif name.startswith("postgres"):
        await drop_postgres_schema(POSTGRES_URL, str(token))
    elif name.startswith("mysql"):
        await drop_mysql_database(MYSQL_URL, str(token))


DATABASES = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


@pytest.fixture
async def database(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
    """A fresh storage of the database named by the test's parameter."""
    name: str = request.param
    storage, token = await open_backend(name)
    try:
        yield storage
    finally:
        await cleanup_backend(name, storage, token)


@pytest.fixture(
    params=[
        "memory",
        *DATABASES,
        pytest.param("redis-unpipelined", marks=pytest.mark.redis),
        pytest.param("postgres-unbatched", marks=pytest.mark.postgres),
        pytest.param("mysql-unbatched", marks=pytest.mark.mysql),
        "compressed-zstd",
        "compressed-gzip",
        pytest.param("compressed-zstd-postgres", marks=pytest.mark.postgres),
        "cached",
        pytest.param("cached-compressed-redis", marks=pytest.mark.redis),
    ]
)
async def kv(request: pytest.FixtureRequest) -> AsyncIterator[KeyValueStorage]:
    """Every key-value storage: each backend (Redis also without auto-pipelining, PostgreSQL
    and MySQL without auto-batching), and the compressed and cached wrappers."""
    name: str = request.param
    if name == "memory":
        yield InMemoryKeyValueStorage()
        return
    if name == "compressed-zstd":
        yield CompressedKeyValueStorage(InMemoryKeyValueStorage(), "zstd")
        return
    if name == "compressed-gzip":
        yield CompressedKeyValueStorage(InMemoryKeyValueStorage(), "gzip")
        return
    if name == "cached":
        cache = pytest.importorskip("infinitic.cache")
        yield cache.CachedKeyValueStorage(InMemoryKeyValueStorage(), max_size=100)
        return
    backend = {"compressed-zstd-postgres": "postgres", "cached-compressed-redis": "redis"}.get(
        name, name
    )
    storage, token = await open_backend(backend)
    try:
        if name == "compressed-zstd-postgres":
            yield CompressedKeyValueStorage(storage.key_value, "zstd")
        elif name == "cached-compressed-redis":
            cache = pytest.importorskip("infinitic.cache")
            compressed = CompressedKeyValueStorage(storage.key_value, "zstd")
            yield cache.CachedKeyValueStorage(compressed, max_size=100)
        else:
            yield storage.key_value
    finally:
        await cleanup_backend(backend, storage, token)


@pytest.fixture(params=["memory", *DATABASES, "cached"])
async def ks(request: pytest.FixtureRequest) -> AsyncIterator[KeySetStorage]:
    """Every key-set storage: each backend, and the cached wrapper."""
    name: str = request.param
    if name == "memory":
        yield InMemoryKeySetStorage()
        return
    if name == "cached":
        cache = pytest.importorskip("infinitic.cache")
        yield cache.CachedKeySetStorage(InMemoryKeySetStorage(), max_size=100)
        return
    storage, token = await open_backend(name)
    try:
        yield storage.key_set
    finally:
        await cleanup_backend(name, storage, token)
