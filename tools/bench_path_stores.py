"""The storages of the message-path benchmark (tools/bench_path.py): the workers' ``storage``
section, and what the server says of the reads, writes and stored bytes.

How reads and writes are counted (server-side, so nothing in the workers is wrapped):

- Redis: ``INFO commandstats`` deltas on a private ``redis-server`` (or on ``--redis-url``, then
  server-wide). Writes are the compare-and-set and delete Lua scripts (``evalsha``/``eval``)
  and key-set ``zadd``/``zrem``; reads are ``hmget`` (get, get_many) and ``zrangebylex``/``zcard``.
  Commands run inside the scripts (``hget``, ``hset``, ``del``) are listed in the JSON only.
- PostgreSQL: ``pg_stat_user_tables`` deltas of the benchmark's own schema. Every statement of
  the storage is one index scan, so statements = ``idx_scan`` (+ ``seq_scan``); writes = rows
  inserted, updated and deleted; reads = statements - writes (a compare-and-set that loses
  counts as a read). Backends publish these statistics when idle, up to 10 s late, so the
  benchmark waits 11 s before each reading.
- MySQL/MariaDB: ``SHOW GLOBAL STATUS`` deltas of ``Com_select`` (reads) and ``Com_insert`` +
  ``Com_update`` + ``Com_delete`` (writes). They are server-wide (performance_schema and
  userstat are off): other clients active meanwhile are counted too, which the sampler detects
  and the report flags.

Bytes stored: sampled every 0.25 s during the concurrent phase: the values under the
benchmark's keys or tables (their count and total length); reported as the mean value size
per stored entry (a workflow's state).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from infinitic.storage import MySQLSettings, PostgresSettings

_REDIS_READS = ("hmget", "zrangebylex", "zcard")
_REDIS_WRITES = ("evalsha", "eval", "zadd", "zrem")


@dataclass
class Counts:
    """Counters read from a storage server at one moment."""

    reads: float
    writes: float
    detail: dict[str, float] = field(default_factory=dict)


class StoreProbe:
    """One storage of one benchmark run: its configuration section, its counters, samples of
    what it holds, and its clean-up."""

    name = ""
    flush_delay = 0.0  # seconds to wait before counters are complete
    exclusive = True  # counters count this benchmark only
    samples_taken = 0
    other_activity = 0  # samples that saw other clients at work (server-wide counters)

    def section(self) -> dict[str, Any]:
        raise NotImplementedError

    async def counts(self) -> Counts:
        raise NotImplementedError

    async def sample(self) -> tuple[int, int]:
        """(values stored, their total bytes) now."""
        raise NotImplementedError

    async def close(self) -> None:
        """Remove what the benchmark stored and disconnect; idempotent."""


class RedisProbe(StoreProbe):
    name = "Redis"

    def __init__(self, url: str, *, exclusive: bool) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.exclusive = exclusive
        self.prefix = f"bench-path-{uuid.uuid4().hex[:8]}:"
        self._redis = aioredis.Redis.from_url(url)

    def section(self) -> dict[str, Any]:
        return {"redis": {"url": self.url, "keyPrefix": self.prefix}}

    async def counts(self) -> Counts:
        stats = await self._redis.info("commandstats")
        calls = {str(k).removeprefix("cmdstat_"): float(v["calls"]) for k, v in stats.items()}
        reads = sum(calls.get(c, 0.0) for c in _REDIS_READS)
        writes = sum(calls.get(c, 0.0) for c in _REDIS_WRITES)
        return Counts(reads, writes, calls)

    async def sample(self) -> tuple[int, int]:
        self.samples_taken += 1
        keys = [k async for k in self._redis.scan_iter(match=f"{self.prefix}kv:*", count=1000)]
        if not keys:
            return 0, 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hstrlen(key, "v")
            sizes = await pipe.execute()
        return len(keys), sum(int(s) for s in sizes)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            keys = [k async for k in self._redis.scan_iter(match=f"{self.prefix}*", count=1000)]
            for i in range(0, len(keys), 500):
                await self._redis.delete(*keys[i : i + 500])
        await self._redis.aclose()


class PostgresProbe(StoreProbe):
    name = "PostgreSQL"
    flush_delay = 11.0

    def __init__(self, url: str) -> None:
        self.settings = PostgresSettings.from_url(url, schema=f"bench_path_{uuid.uuid4().hex[:8]}")
        self._conn: Any = None

    def section(self) -> dict[str, Any]:
        s = self.settings
        options = {"host": s.host, "port": s.port, "user": s.user, "database": s.database}
        if s.password:
            options["password"] = _reveal(s.password)
        return {"postgres": {**options, "schema": s.schema}}

    async def _connection(self) -> Any:
        import asyncpg

        if self._conn is None:
            s = self.settings
            self._conn = await asyncpg.connect(
                host=s.host,
                port=s.port,
                user=s.user,
                password=_reveal(s.password),
                database=s.database,
            )
        return self._conn

    async def counts(self) -> Counts:
        conn = await self._connection()
        row = await conn.fetchrow(
            "SELECT coalesce(sum(seq_scan), 0) AS seq, coalesce(sum(idx_scan), 0) AS idx, "
            "coalesce(sum(n_tup_ins), 0) AS ins, coalesce(sum(n_tup_upd), 0) AS upd, "
            "coalesce(sum(n_tup_del), 0) AS del FROM pg_stat_user_tables WHERE schemaname = $1",
            self.settings.schema,
        )
        detail = {k: float(row[k]) for k in ("seq", "idx", "ins", "upd", "del")}
        writes = detail["ins"] + detail["upd"] + detail["del"]
        # each sample is one sequential scan of the key-value table
        statements = detail["seq"] + detail["idx"] - self.samples_taken
        return Counts(statements - writes, writes, detail)

    async def sample(self) -> tuple[int, int]:
        conn = await self._connection()
        s = self.settings
        try:
            row = await conn.fetchrow(
                f'SELECT count(*), coalesce(sum(octet_length(value)), 0) FROM "{s.schema}".'
                f'"{s.key_value_table}"'
            )
        except Exception:  # not created yet
            return 0, 0
        self.samples_taken += 1
        return int(row[0]), int(row[1])

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            conn = await self._connection()
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.settings.schema}" CASCADE')
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


class MySQLProbe(StoreProbe):
    name = "MySQL"
    exclusive = False

    def __init__(self, url: str) -> None:
        self.settings = MySQLSettings.from_url(url, database=f"bench_path_{uuid.uuid4().hex[:8]}")
        self._conn: Any = None

    def section(self) -> dict[str, Any]:
        s = self.settings
        options = {"host": s.host, "port": s.port, "user": s.user, "database": s.database}
        if s.password:
            options["password"] = _reveal(s.password)
        return {"mysql": options}

    async def _query(self, sql: str) -> list[tuple[Any, ...]]:
        import aiomysql

        if self._conn is None:
            s = self.settings
            self._conn = await aiomysql.connect(
                host=s.host,
                port=s.port,
                user=s.user,
                password=_reveal(s.password) or "",
                autocommit=True,
            )
        async with self._conn.cursor() as cursor:
            await cursor.execute(sql)
            return list(await cursor.fetchall())

    async def counts(self) -> Counts:
        names = ("Com_select", "Com_insert", "Com_update", "Com_delete")
        rows = await self._query(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ({})".format(
                ", ".join(f"'{n}'" for n in names)
            )
        )
        detail = {str(k): float(v) for k, v in rows}
        # the sampler's own selects are not the workers'
        reads = detail["Com_select"] - 2 * self.samples_taken
        writes = detail["Com_insert"] + detail["Com_update"] + detail["Com_delete"]
        return Counts(reads, writes, detail)

    async def sample(self) -> tuple[int, int]:
        s = self.settings
        self.samples_taken += 1
        busy = await self._query(
            "SELECT INFO FROM information_schema.PROCESSLIST "
            "WHERE COMMAND <> 'Sleep' AND ID <> CONNECTION_ID()"
        )
        if any(info and s.database not in str(info) for (info,) in busy):
            self.other_activity += 1
        try:
            rows = await self._query(
                f"SELECT COUNT(*), COALESCE(SUM(LENGTH(v)), 0) FROM `{s.database}`."
                f"`{s.key_value_table}`"
            )
        except Exception:  # not created yet
            return 0, 0
        return int(rows[0][0]), int(rows[0][1])

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._query(f"DROP DATABASE IF EXISTS `{self.settings.database}`")
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _reveal(password: SecretStr | str | None) -> str | None:
    """The password a settings object holds (a SecretStr once validated)."""
    if isinstance(password, SecretStr):
        return password.get_secret_value()
    return password
