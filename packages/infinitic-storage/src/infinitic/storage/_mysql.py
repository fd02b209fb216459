"""MySQL and MariaDB storage (aiomysql), installed with the ``mysql`` extra.

The database and two tables are created on first use: ``<key_value_table>(k, v, version)`` and
``<key_set_table>(k, m)``. Keys and members are stored as VARBINARY holding their UTF-8 bytes,
so comparisons are exact (no collation padding or case folding) and members are ordered by code
point, like Python strings. They are sent as utf8mb4 strings, and values as hexadecimal unhexed
by the server, which works with every PyMySQL version. Compare-and-set is one statement:
``UPDATE ... WHERE version = n`` checked by its affected rows, or a plain INSERT relying on the
primary key for an absent key.

Key-value reads, compare-and-set writes and deletes are batched automatically: those issued
concurrently go to the server together, one multi-statement (one round trip) per batch (see
``_sql_batching`` and ``_sql_mysql``).
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import SecretStr

from infinitic.exceptions import ValueTooLargeError, VersionConflictError
from infinitic.storage._backend import (
    SharedClient,
    SharedClientUser,
    check_identifier,
    describe_keys,
    missing_driver,
)
from infinitic.storage._interfaces import (
    KeySetPage,
    KeySetStorage,
    KeyValueStorage,
    Storage,
    VersionedValue,
)
from infinitic.storage._secrets import redact_url, reveal, secret, settings_repr

try:
    import aiomysql
except ImportError as _e:  # pragma: no cover - exercised by the install-hint test
    raise missing_driver("MySQL", "aiomysql", "mysql") from _e

from infinitic.storage._sql_batching import MAX_IN_FLIGHT, Kind, SqlAutoBatcher
from infinitic.storage._sql_mysql import MySQLBatchRunner

# Server gone away, lost connection, connection killed (MariaDB), disconnected (MySQL 8).
_CONNECTION_LOST_CODES = frozenset({2006, 2013, 2014, 2055, 1053, 1927, 4031})
_DUPLICATE_KEY = 1062
_MAX_KEY_BYTES = 1024
_BATCH = 500


@dataclass(frozen=True, slots=True)
class _Result:
    rowcount: int
    lastrowid: int
    rows: tuple[tuple[Any, ...], ...] = field(default=())


@dataclass(frozen=True, kw_only=True)
class MySQLSettings:
    """How to reach MySQL or MariaDB and where to keep the data.

    Attributes:
        host, port, user, password: the server and the account. The password is a
            :class:`pydantic.SecretStr` (a ``str`` is converted), masked in the repr.
        database: created on first use if missing (the account needs the right to).
        ssl: True for TLS, the server certificate and name verified against ``ssl_ca_certs``
            (or the system's certificates); or an :class:`ssl.SSLContext`.
        ssl_ca_certs: a PEM file of the certificate authorities to trust.
        min_pool_size, max_pool_size: bounds of the connection pool.
        connect_timeout: seconds to wait for a connection.
        operation_timeout: seconds to wait for one operation.
        pool_recycle: seconds after which an idle connection is replaced (-1: never).
        auto_batching: send the key-value gets, compare-and-sets and deletes issued
            concurrently together, one multi-statement (one round trip) per batch, on at most
            4 connections. False sends each operation alone, as soon as it is called, on a
            connection of its own.
    """

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: SecretStr | str | None = None
    database: str = "infinitic"
    ssl: bool | _ssl.SSLContext = False
    ssl_ca_certs: str | None = None
    key_value_table: str = "key_value"
    key_set_table: str = "key_set"
    min_pool_size: int = 1
    max_pool_size: int = 10
    connect_timeout: float = 10.0
    operation_timeout: float = 30.0
    pool_recycle: float = 3600.0
    auto_batching: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "password", secret(self.password))
        check_identifier("database", self.database)
        check_identifier("table", self.key_value_table)
        check_identifier("table", self.key_set_table)
        if not 0 <= self.min_pool_size <= self.max_pool_size or self.max_pool_size < 1:
            raise ValueError(
                f"invalid pool sizes min={self.min_pool_size} max={self.max_pool_size}: "
                "need 0 <= min <= max and max >= 1"
            )

    def __repr__(self) -> str:
        return settings_repr(self)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MySQLSettings:
        """Settings for ``mysql://user:password@host:port/database?ssl=true``.

        ``options`` set the other attributes and override what the URL says.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb"):
            raise ValueError(f"not a MySQL URL: {redact_url(url)!r} (expected mysql://...)")
        found: dict[str, Any] = {}
        if parts.hostname:
            found["host"] = parts.hostname
        if parts.port:
            found["port"] = parts.port
        if parts.username:
            found["user"] = unquote(parts.username)
        if parts.password is not None:
            found["password"] = unquote(parts.password)
        if parts.path.strip("/"):
            found["database"] = unquote(parts.path.strip("/"))
        query = parse_qs(parts.query)
        if "ssl" in query:
            found["ssl"] = query["ssl"][-1].lower() in ("1", "true", "yes", "require")
        return cls(**(found | options))


class _MySQLPool(SharedClient["aiomysql.Pool"]):
    backend = "MySQL"

    def __init__(self, settings: MySQLSettings) -> None:
        super().__init__(settings.operation_timeout)
        s = self.settings = settings
        self.secrets = tuple(p for p in (reveal(s.password),) if p)
        self.kv = f"`{s.database}`.`{s.key_value_table}`"
        self.row_alias = False
        self.max_allowed_packet = 4 * 1024 * 1024  # until the server says
        self.ks = f"`{s.database}`.`{s.key_set_table}`"

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        return (aiomysql.MySQLError,)

    def is_connection_lost(self, error: BaseException) -> bool:
        if isinstance(error, aiomysql.InterfaceError | OSError):
            return True
        return isinstance(error, aiomysql.OperationalError) and bool(
            error.args and error.args[0] in _CONNECTION_LOST_CODES
        )

    async def connection_lost(self, client: aiomysql.Pool) -> None:
        # A killed connection is usually not alone (a restart, a failover): drop the idle ones.
        await client.clear()

    async def _open(self) -> aiomysql.Pool:
        s = self.settings
        ssl_context: _ssl.SSLContext | None
        if isinstance(s.ssl, _ssl.SSLContext):
            ssl_context = s.ssl
        else:
            ssl_context = _ssl.create_default_context(cafile=s.ssl_ca_certs) if s.ssl else None
        pool = await aiomysql.create_pool(
            minsize=s.min_pool_size,
            maxsize=s.max_pool_size,
            pool_recycle=s.pool_recycle,
            host=s.host,
            port=s.port,
            user=s.user,
            password=reveal(s.password) or "",
            connect_timeout=s.connect_timeout,
            ssl=ssl_context,
            autocommit=True,
            charset="utf8mb4",
            # Notes ("table already exists") would otherwise surface as Python warnings.
            init_command="SET SESSION sql_notes = 0",
        )
        try:
            await self._create_tables(pool)
        except BaseException:
            pool.close()
            await pool.wait_closed()
            raise
        return pool

    def upsert(self, rows: str, version: str) -> str:
        """An INSERT of ``rows`` updating ``v`` and setting ``version`` on duplicate keys."""
        if self.row_alias:
            return (
                f"INSERT INTO {self.kv} (k, v, version) VALUES {rows} AS new "
                f"ON DUPLICATE KEY UPDATE v = new.v, version = {version}"
            )
        return (
            f"INSERT INTO {self.kv} (k, v, version) VALUES {rows} "
            f"ON DUPLICATE KEY UPDATE v = VALUES(v), version = {version}"
        )

    async def _create_tables(self, pool: aiomysql.Pool) -> None:
        s = self.settings
        # MySQL 8.0.20+ deprecates VALUES() in ON DUPLICATE KEY UPDATE (with a warning) in
        # favor of a row alias, which MariaDB does not know.
        server, packet = (
            await execute(pool, "SELECT VERSION(), @@max_allowed_packet", fetch=True)
        ).rows[0]
        self.max_allowed_packet = int(packet)
        server = server.decode() if isinstance(server, bytes) else str(server)
        numbers = tuple(int(x) for x in server.split("-")[0].split(".")[:3] if x.isdigit())
        self.row_alias = "mariadb" not in server.lower() and numbers >= (8, 0, 20)
        await execute(pool, f"CREATE DATABASE IF NOT EXISTS `{s.database}`")
        await execute(
            pool,
            f"CREATE TABLE IF NOT EXISTS {self.kv} ("
            f"k VARBINARY({_MAX_KEY_BYTES}) NOT NULL PRIMARY KEY, "
            "v LONGBLOB NOT NULL, "
            "version BIGINT NOT NULL) ENGINE=InnoDB",
        )
        await execute(
            pool,
            f"CREATE TABLE IF NOT EXISTS {self.ks} ("
            f"k VARBINARY({_MAX_KEY_BYTES}) NOT NULL, "
            f"m VARBINARY({_MAX_KEY_BYTES}) NOT NULL, "
            "PRIMARY KEY (k, m)) ENGINE=InnoDB",
        )

    async def _close(self, client: aiomysql.Pool) -> None:
        client.close()
        await client.wait_closed()


async def execute(
    pool: aiomysql.Pool, sql: str, args: Sequence[Any] = (), *, fetch: bool = False
) -> _Result:
    """Run one statement on a pooled connection; a connection that failed is discarded."""
    conn = await pool.acquire()
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql, args)
            rows = tuple(await cur.fetchall()) if fetch else ()
            return _Result(cur.rowcount, cur.lastrowid or 0, rows)
    except aiomysql.IntegrityError:
        raise
    except BaseException:
        # The connection may be half-way through a reply (a timeout, a kill): never reuse it.
        conn.close()
        raise
    finally:
        await pool.release(conn)


class _MySQLStorageBase(SharedClientUser[MySQLSettings, _MySQLPool]):
    _settings_type = MySQLSettings
    _client_type = _MySQLPool


class MySQLKeyValueStorage(_MySQLStorageBase, KeyValueStorage):
    """Key-value storage in a MySQL or MariaDB table, with atomic compare-and-set.

    The pool opens, and the database and tables are created, on the first call. Every
    operation raises StorageError when the server fails (naming the key); a lost connection is
    replaced and the operation retried once. Gets, compare-and-sets and deletes issued
    concurrently are sent together, one multi-statement per batch (unless ``auto_batching`` is
    off). Keys are limited to 1024 UTF-8 bytes.
    """

    def __init__(
        self, settings: MySQLSettings | None = None, *, _shared: _MySQLPool | None = None
    ) -> None:
        super().__init__(settings, _shared)
        kv = self._shared.kv
        self._sql_get = f"SELECT v, version FROM {kv} WHERE k = %s"
        # LAST_INSERT_ID(expr) hands the new version back in the OK packet: one round trip.
        self._sql_insert = f"INSERT INTO {kv} (k, v, version) VALUES (%s, UNHEX(%s), 1)"
        self._sql_update = (
            f"UPDATE {kv} SET v = UNHEX(%s), version = version + 1 WHERE k = %s AND version = %s"
        )
        self._sql_version = f"SELECT version FROM {kv} WHERE k = %s"
        self._sql_delete = f"DELETE FROM {kv} WHERE k = %s"
        self._sql_delete_version = f"DELETE FROM {kv} WHERE k = %s AND version = %s"
        s = self.settings
        self._batcher: SqlAutoBatcher[aiomysql.Pool] | None = None
        if s.auto_batching:
            self._batcher = SqlAutoBatcher(
                self._shared,
                MySQLBatchRunner(self._shared),
                max_in_flight=min(MAX_IN_FLIGHT, s.max_pool_size),
            )

    async def get(self, key: str) -> VersionedValue | None:
        if self._batcher is not None:
            found: VersionedValue | None = await self._batcher.call(Kind.GET, "get", (key,))
            return found
        result = await self._shared.run(
            "get",
            describe_keys([key]),
            lambda pool: execute(pool, self._sql_get, (key,), fetch=True),
        )
        if not result.rows:
            return None
        value, version = result.rows[0]
        return VersionedValue(bytes(value), int(version))

    async def get_many(self, keys: Sequence[str]) -> dict[str, VersionedValue]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, VersionedValue] = {}
        if self._batcher is not None and keys:
            many: dict[str, VersionedValue] = await self._batcher.call(Kind.GET, "get_many", keys)
            return many
        for i in range(0, len(keys), _BATCH):
            chunk = keys[i : i + _BATCH]
            sql = (
                f"SELECT k, v, version FROM {self._shared.kv} "
                f"WHERE k IN ({', '.join(['%s'] * len(chunk))})"
            )
            result = await self._shared.run(
                "get_many",
                describe_keys(keys[i : i + _BATCH]),
                partial(execute, sql=sql, args=chunk, fetch=True),
            )
            for k, v, version in result.rows:
                out[bytes(k).decode()] = VersionedValue(bytes(v), int(version))
        return out

    async def _check_size(self, key: str, value: bytes) -> None:
        """Refuse a value its statement cannot carry: values travel as hexadecimal (twice their
        size) in one packet of at most the server's ``max_allowed_packet``; sent anyway, the
        server drops the connection and every retry fails the same way."""
        await self._shared.client("put", describe_keys([key]))  # the server's limit is known
        limit = (self._shared.max_allowed_packet - 2 * len(key.encode()) - 1024) // 2
        if len(value) > limit:
            hint = f" (max_allowed_packet {self._shared.max_allowed_packet:,}, hex-encoded)"
            raise ValueTooLargeError("MySQL", key, len(value), limit, hint)

    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        await self._check_size(key, value)
        if self._batcher is not None:
            written: int = await self._batcher.call(
                Kind.PUT, "put", (key,), bytes(value), expected_version
            )
            return written
        what, k, hexed = describe_keys([key]), key, bytes(value).hex()
        if expected_version is None:
            # LAST_INSERT_ID(expr) hands the new version back in the OK packet: one round trip.
            # (the statement is built once connected: it depends on the server's version)
            rows, version = "(%s, UNHEX(%s), LAST_INSERT_ID(1))", "LAST_INSERT_ID(version + 1)"
            result = await self._shared.run(
                "put",
                what,
                lambda pool: execute(pool, self._shared.upsert(rows, version), (k, hexed)),
            )
            return result.lastrowid
        if expected_version == 0:
            try:
                await self._shared.run(
                    "put", what, lambda pool: execute(pool, self._sql_insert, (k, hexed))
                )
            except Exception as e:
                cause = e.__cause__
                if isinstance(cause, aiomysql.IntegrityError) and cause.args[0] == (_DUPLICATE_KEY):
                    raise VersionConflictError(key, 0, await self._version(key)) from None
                raise
            return 1
        args = (hexed, k, expected_version)
        result = await self._shared.run(
            "put", what, lambda pool: execute(pool, self._sql_update, args)
        )
        if result.rowcount != 1:
            raise VersionConflictError(key, expected_version, await self._version(key))
        return expected_version + 1

    async def put_many(self, items: Mapping[str, bytes]) -> None:
        for key, value in items.items():
            await self._check_size(key, value)
        pairs = [(k, bytes(v).hex()) for k, v in items.items()]
        for i in range(0, len(pairs), _BATCH):
            chunk = pairs[i : i + _BATCH]
            rows = ", ".join(["(%s, UNHEX(%s), 1)"] * len(chunk))
            args = [x for pair in chunk for x in pair]
            await self._shared.run(
                "put_many",
                describe_keys([k for k, _ in chunk]),
                partial(self._upsert_rows, rows=rows, args=args),
            )

    async def _upsert_rows(self, pool: aiomysql.Pool, rows: str, args: list[str]) -> _Result:
        return await execute(pool, self._shared.upsert(rows, "version + 1"), args)

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        if self._batcher is not None and expected_version != 0:
            await self._batcher.call(Kind.DELETE, "delete", (key,), b"", expected_version)
            return
        what, k = describe_keys([key]), key
        if expected_version is None:
            await self._shared.run(
                "delete", what, lambda pool: execute(pool, self._sql_delete, (k,))
            )
            return
        if expected_version == 0:
            actual = await self._version(key)
            if actual != 0:
                raise VersionConflictError(key, 0, actual)
            return
        result = await self._shared.run(
            "delete",
            what,
            lambda pool: execute(pool, self._sql_delete_version, (k, expected_version)),
        )
        if result.rowcount != 1:
            raise VersionConflictError(key, expected_version, await self._version(key))

    async def _version(self, key: str) -> int:
        """The stored version (0 if absent), for conflict messages."""
        if self._batcher is not None:
            current = await self.get(key)
            return 0 if current is None else current.version
        result = await self._shared.run(
            "get",
            describe_keys([key]),
            lambda pool: execute(pool, self._sql_version, (key,), fetch=True),
        )
        return int(result.rows[0][0]) if result.rows else 0

    async def close(self) -> None:
        """Fail the operations not sent yet, let those in flight finish, then release the
        shared pool (closed with its last user); idempotent."""
        if self._batcher is not None:
            await self._batcher.close()
        await super().close()


class MySQLKeySetStorage(_MySQLStorageBase, KeySetStorage):
    """Key-set storage in a MySQL or MariaDB table of (key, member) rows.

    Keys and members are limited to 1024 UTF-8 bytes each.
    """

    def __init__(
        self, settings: MySQLSettings | None = None, *, _shared: _MySQLPool | None = None
    ) -> None:
        super().__init__(settings, _shared)
        ks = self._shared.ks
        # Not INSERT IGNORE: its "duplicate entry" warning would reach Python's warnings.
        self._sql_add = f"INSERT INTO {ks} (k, m) VALUES (%s, %s) ON DUPLICATE KEY UPDATE m = m"
        self._sql_remove = f"DELETE FROM {ks} WHERE k = %s AND m = %s"
        self._sql_first = f"SELECT m FROM {ks} WHERE k = %s ORDER BY m LIMIT %s"
        self._sql_after = f"SELECT m FROM {ks} WHERE k = %s AND m > %s ORDER BY m LIMIT %s"
        self._sql_count = f"SELECT COUNT(*) FROM {ks} WHERE k = %s"

    async def add(self, key: str, member: str) -> None:
        args = (key, member)
        await self._shared.run(
            "add", describe_keys([key]), lambda pool: execute(pool, self._sql_add, args)
        )

    async def remove(self, key: str, member: str) -> None:
        args = (key, member)
        await self._shared.run(
            "remove", describe_keys([key]), lambda pool: execute(pool, self._sql_remove, args)
        )

    async def page(self, key: str, *, after: str | None = None, limit: int = 1000) -> KeySetPage:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        args: tuple[Any, ...]
        if after is None:
            sql, args = self._sql_first, (key, limit + 1)
        else:
            sql, args = self._sql_after, (key, after, limit + 1)
        result = await self._shared.run(
            "page", describe_keys([key]), lambda pool: execute(pool, sql, args, fetch=True)
        )
        members = [bytes(row[0]).decode() for row in result.rows[:limit]]
        return KeySetPage(members, members[-1] if len(result.rows) > limit else None)

    async def count(self, key: str) -> int:
        result = await self._shared.run(
            "count",
            describe_keys([key]),
            lambda pool: execute(pool, self._sql_count, (key,), fetch=True),
        )
        return int(result.rows[0][0])


class MySQLStorage(Storage):
    """Key-value and key-set storage in one MySQL or MariaDB database, sharing one pool.

    Example:
        >>> storage = MySQLStorage.from_url("mysql://root@127.0.0.1:3306/app")  # doctest: +SKIP
    """

    key_value: MySQLKeyValueStorage
    key_set: MySQLKeySetStorage

    def __init__(self, settings: MySQLSettings | None = None) -> None:
        self.settings = settings or MySQLSettings()
        shared = _MySQLPool(self.settings)
        super().__init__(MySQLKeyValueStorage(_shared=shared), MySQLKeySetStorage(_shared=shared))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Storage at ``url``; ``options`` are other :class:`MySQLSettings` attributes."""
        return cls(MySQLSettings.from_url(url, **options))
