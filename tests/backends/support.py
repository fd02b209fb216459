"""Reaching the real services of the backend tests, the same way as infinitic-storage's tests:
URLs from REDIS_URL, POSTGRES_URL and MYSQL_URL (loopback defaults); an unreachable service
skips its tests locally and fails them when CI is set. Every test gets its own Redis key
prefix, PostgreSQL schema or MySQL database, removed afterwards."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import pytest

from infinitic.storage import CompressedKeyValueStorage, Compression, Storage
from infinitic.storage.testing import service_url

REDIS_URL = service_url("redis")  # testcontainers only with Docker and no URL
POSTGRES_URL = service_url("postgres")
MYSQL_URL = service_url("mysql")

_DEFAULT_PORTS = {"redis": 6379, "postgresql": 5432, "postgres": 5432, "mysql": 3306}


def unavailable(reason: str) -> None:
    """Skip locally; fail when CI is set (every service must be there)."""
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI is set, so this is an error)")
    pytest.skip(reason)


def require(service: str, url: str) -> str:
    """Return ``url``, or skip (fail under CI) when the service does not answer."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return url
    except OSError:
        unavailable(f"{service} is not reachable at {url}")
        raise AssertionError("unreachable") from None


def unique(prefix: str) -> str:
    """A name no other test run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class Backend:
    """A storage on a real database, its private namespace, and how to clean it up."""

    def __init__(
        self, name: str, storage: Storage, token: str, cleanup: Callable[[], Awaitable[None]]
    ) -> None:
        self.name = name
        self.storage = storage
        self.token = token  # Redis client name / key prefix, PostgreSQL application name, ...
        self.raw = storage  # without compression
        self._cleanup = cleanup

    async def close(self) -> None:
        await self.storage.close()
        await self._cleanup()


async def drop_redis_keys(prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()


async def drop_postgres_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def open_backend(name: str, compression: Compression | None = None) -> Backend:
    """A fresh storage on database ``name`` (redis, postgres or mysql)."""
    storage: Storage
    if name == "redis":
        from infinitic.storage import RedisStorage

        url = require("Redis", REDIS_URL)
        token = unique("infinitic-e2e")
        storage = RedisStorage.from_url(url, key_prefix=token + ":", client_name=token)

        async def cleanup() -> None:
            await drop_redis_keys(token + ":")

    elif name == "postgres":
        from infinitic.storage import PostgresStorage

        url = require("PostgreSQL", POSTGRES_URL)
        token = unique("e2e")
        storage = PostgresStorage.from_url(url, schema=token, application_name=token)

        async def cleanup() -> None:
            await drop_postgres_schema(token)

    elif name == "mysql":
        import aiomysql

        from infinitic.storage import MySQLSettings, MySQLStorage

        url = require("MySQL", MYSQL_URL)
        token = unique("e2e")
        storage = MySQLStorage.from_url(url, database=token)

        async def cleanup() -> None:
            s = MySQLSettings.from_url(MYSQL_URL)
            conn = await aiomysql.connect(
                host=s.host,
                port=s.port,
                user=s.user,
                password=s.password.get_secret_value() if s.password else "",
                autocommit=True,
            )
            try:
                async with conn.cursor() as cur:
                    await cur.execute(f"DROP DATABASE IF EXISTS `{token}`")
            finally:
                conn.close()

    else:
        raise ValueError(name)
    backend = Backend(name, storage, token, cleanup)
    if compression is not None:
        backend.storage = Storage(
            CompressedKeyValueStorage(storage.key_value, compression), storage.key_set
        )
    return backend


async def kill_redis_clients(client_name: str) -> int:
    """Close the server side of every Redis connection named ``client_name``."""
    import redis.asyncio as aioredis

    admin = aioredis.Redis.from_url(REDIS_URL)
    try:
        clients = await admin.client_list()
        killed = 0
        for c in clients:
            if c.get("name") == client_name:
                killed += int(await admin.execute_command("CLIENT", "KILL", "ID", c["id"]))
        return killed
    finally:
        await admin.aclose()


async def kill_postgres_backends(application_name: str) -> int:
    """Terminate every PostgreSQL backend of ``application_name``."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            application_name,
        )
        return sum(1 for r in rows if r[0])
    finally:
        await conn.close()
