"""PostgreSQL storage (asyncpg), installed with the ``postgres`` extra.

Two tables in a schema, created on first use: ``<key_value_table>(key, value, version)`` and
``<key_set_table>(key, member)``. Text columns use the "C" collation, so members are ordered by
code point, like Python strings. Compare-and-set is a single conditional statement
(``INSERT ... ON CONFLICT DO NOTHING`` for an absent key, ``UPDATE ... WHERE version = $n``
otherwise), atomic under PostgreSQL's row locks.

Key-value reads, compare-and-set writes and deletes are batched automatically: those issued
concurrently go to PostgreSQL together, one statement (one round trip) per batch (see
``_sql_batching`` and ``_sql_postgres``).
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

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
from infinitic.storage._secrets import (
    reveal,
    secret,
    settings_repr,
    url_password,
)

try:
    import asyncpg
except ImportError as _e:  # pragma: no cover - exercised by the install-hint test
    raise missing_driver("PostgreSQL", "asyncpg", "postgres") from _e

from infinitic.storage._sql_batching import MAX_IN_FLIGHT, Kind, SqlAutoBatcher
from infinitic.storage._sql_postgres import PostgresBatchRunner


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Hand a connection back to the pool as it is.

    The storage changes no session state (no SET, LISTEN or session advisory lock), and asyncpg
    still rolls back a transaction left open; its default reset would cost one more round trip
    per operation.
    """


# The largest bytea field (1 GiB), less room for the statement that carries it.
POSTGRES_MAX_VALUE_BYTES = 1024 * 1024 * 1024 - 1024 * 1024
_SSL_MODES = ("disable", "require", "verify-ca", "verify-full")
_FLAGS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}
_OPPORTUNISTIC = ("allow", "prefer")


def _url_query(url: str | None) -> dict[str, str]:
    if url is None:
        return {}
    return {k.lower(): v for k, v in parse_qsl(urlsplit(url).query)}


def _check_ssl_mode(mode: str, where: str) -> None:
    if mode in _OPPORTUNISTIC:
        raise ValueError(
            f"invalid {where} {mode!r}: it encrypts without verifying the server and falls "
            "back to plaintext; use 'verify-full' (or ssl=True), 'verify-ca', 'require' "
            "(encrypted, not verified) or 'disable'"
        )
    if mode not in _SSL_MODES:
        raise ValueError(f"invalid {where} {mode!r}: use one of {', '.join(_SSL_MODES)}")


@dataclass(frozen=True, kw_only=True)
class PostgresSettings:
    """How to reach PostgreSQL and where to keep the data.

    Attributes:
        url: a ``postgresql://user@host:port/database`` URL (libpq query parameters work;
            ``sslmode`` and ``sslrootcert`` are read as ``ssl`` and ``ssl_ca_certs`` when those
            are not set); when given it replaces host, port, user and database. A password in
            it is masked in the repr.
        password: kept out of the URL if you prefer; used with or without ``url``. A
            :class:`pydantic.SecretStr` (a ``str`` is converted), masked in the repr.
        ssl: what it says, never less. True or "verify-full": TLS, the server certificate
            verified against ``ssl_ca_certs`` (or the system's certificates) and its name
            against the host. "verify-ca": TLS, the certificate verified, not the name.
            "require": TLS without verification (with ``ssl_ca_certs``, as "verify-ca", like
            libpq). False or "disable": no TLS. None (the default): the URL's ``sslmode``,
            else no TLS (``PGSSLMODE`` is not read). An :class:`ssl.SSLContext`: TLS with that
            context. "prefer" and "allow", which fall back to plaintext without a word, are
            refused. Text such as "true" or "off" (an environment override) is the boolean.
        ssl_ca_certs: a PEM file of the certificate authorities to trust.
        ssl_certfile, ssl_keyfile: a client certificate and its key, if the server asks for one.
        schema: the schema holding the tables (created if missing).
        min_pool_size, max_pool_size: bounds of the connection pool.
        connect_timeout: seconds to wait for a connection.
        operation_timeout: seconds to wait for one operation.
        max_inactive_connection_lifetime: seconds before an idle pooled connection is closed.
        application_name: shown in ``pg_stat_activity``.
        auto_batching: send the key-value gets, compare-and-sets and deletes issued
            concurrently together, one statement (one round trip) per batch, on at most 4
            connections. False sends each operation alone, as soon as it is called, on a
            connection of its own.
    """

    url: str | None = None
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: SecretStr | str | None = None
    database: str = "postgres"
    ssl: bool | str | _ssl.SSLContext | None = None
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    schema: str = "infinitic"
    key_value_table: str = "key_value"
    key_set_table: str = "key_set"
    min_pool_size: int = 1
    max_pool_size: int = 10
    connect_timeout: float = 10.0
    operation_timeout: float = 30.0
    max_inactive_connection_lifetime: float = 300.0
    application_name: str = "infinitic"
    auto_batching: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "password", secret(self.password))
        if isinstance(self.ssl, str):
            # An environment override arrives as text: "true" means True, not a mode name.
            flag = _FLAGS.get(self.ssl.strip().lower())
            if flag is not None:
                object.__setattr__(self, "ssl", flag)
            else:
                _check_ssl_mode(self.ssl, "ssl")
        url_mode = _url_query(self.url).get("sslmode")
        if url_mode is not None:
            _check_ssl_mode(url_mode, "sslmode in the URL")
        check_identifier("schema", self.schema)
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
    def from_url(cls, url: str, **options: Any) -> PostgresSettings:
        """Settings for ``url``; ``options`` set the other attributes."""
        return cls(url=url, **options)

    def tls_context(self) -> _ssl.SSLContext | None:
        """The TLS context connections use, or None for no TLS (see ``ssl``)."""
        if isinstance(self.ssl, _ssl.SSLContext):
            return self.ssl
        query = _url_query(self.url)
        mode: str
        if self.ssl is None:
            mode = query.get("sslmode", "disable")
        elif isinstance(self.ssl, bool):
            mode = "verify-full" if self.ssl else "disable"
        else:
            mode = self.ssl
        if mode == "disable":
            return None
        ca = self.ssl_ca_certs or query.get("sslrootcert")
        context = _ssl.create_default_context(cafile=ca)
        if mode == "require" and ca is None:
            context.check_hostname = False
            context.verify_mode = _ssl.CERT_NONE
        elif mode != "verify-full":
            context.check_hostname = False
        certfile = self.ssl_certfile or query.get("sslcert")
        if certfile is not None:
            context.load_cert_chain(certfile, self.ssl_keyfile or query.get("sslkey"))
        return context


class _PostgresPool(SharedClient["asyncpg.Pool"]):
    backend = "PostgreSQL"

    def __init__(self, settings: PostgresSettings) -> None:
        super().__init__(settings.operation_timeout)
        s = self.settings = settings
        self.secrets = tuple(p for p in (reveal(s.password), url_password(s.url)) if p)
        self.kv = f'"{s.schema}"."{s.key_value_table}"'
        self.ks = f'"{s.schema}"."{s.key_set_table}"'

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        return (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)

    def is_connection_lost(self, error: BaseException) -> bool:
        return isinstance(
            error,
            asyncpg.PostgresConnectionError
            | asyncpg.InterfaceError
            | asyncpg.InternalClientError
            | asyncpg.CannotConnectNowError
            | asyncpg.AdminShutdownError
            | OSError,
        )

    async def connection_lost(self, client: asyncpg.Pool) -> None:
        # A terminated backend is usually not alone (a restart, a failover): replace them all.
        await client.expire_connections()

    async def _open(self) -> asyncpg.Pool:
        s = self.settings
        options: dict[str, Any] = {
            "min_size": s.min_pool_size,
            "max_size": s.max_pool_size,
            "timeout": s.connect_timeout,
            "command_timeout": s.operation_timeout,
            "max_inactive_connection_lifetime": s.max_inactive_connection_lifetime,
            "server_settings": {"application_name": s.application_name},
            "reset": _keep_session,  # asyncpg >= 0.30
        }
        password = reveal(s.password)
        if password is not None:
            options["password"] = password
        # Always explicit: asyncpg's own default ("prefer") would encrypt without verifying
        # and fall back to plaintext.
        options["ssl"] = s.tls_context() or False
        if s.url is not None:
            options["dsn"] = s.url
        else:
            options.update(host=s.host, port=s.port, user=s.user, database=s.database)
        pool = await asyncpg.create_pool(**options)
        try:
            await self._create_tables(pool)
        except BaseException:
            await pool.close()
            raise
        return pool

    async def _create_tables(self, pool: asyncpg.Pool) -> None:
        s = self.settings
        async with pool.acquire() as conn:
            present = await conn.fetchval(
                "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
                self.kv,
                self.ks,
            )
            if present:
                return
            async with conn.transaction():
                # Serializes workers creating the same tables at once (CREATE ... IF NOT EXISTS
                # alone can still collide on the catalog's unique indexes).
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))", f"infinitic:{s.schema}"
                )
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{s.schema}"')
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.kv} ("
                    'key text COLLATE "C" PRIMARY KEY, '
                    "value bytea NOT NULL, "
                    "version bigint NOT NULL)"
                )
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.ks} ("
                    'key text COLLATE "C" NOT NULL, '
                    'member text COLLATE "C" NOT NULL, '
                    "PRIMARY KEY (key, member))"
                )

    async def _close(self, client: asyncpg.Pool) -> None:
        await client.close()


class _PostgresStorageBase(SharedClientUser[PostgresSettings, _PostgresPool]):
    _settings_type = PostgresSettings
    _client_type = _PostgresPool


class PostgresKeyValueStorage(_PostgresStorageBase, KeyValueStorage):
    """Key-value storage in a PostgreSQL table, with atomic compare-and-set.

    The pool opens, and the schema and tables are created, on the first call. Gets,
    compare-and-sets and deletes issued concurrently are sent together, one statement per batch
    (unless ``auto_batching`` is off). Every operation raises StorageError when PostgreSQL fails
    (naming the key); a lost connection is replaced and the operation retried once.
    """

    def __init__(
        self, settings: PostgresSettings | None = None, *, _shared: _PostgresPool | None = None
    ) -> None:
        super().__init__(settings, _shared)
        kv = self._shared.kv
        self._sql_get = f"SELECT value, version FROM {kv} WHERE key = $1"
        self._sql_get_many = f"SELECT key, value, version FROM {kv} WHERE key = ANY($1::text[])"
        self._sql_upsert = (
            f"INSERT INTO {kv} AS t (key, value, version) VALUES ($1, $2, 1) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = t.version + 1 "
            "RETURNING version"
        )
        self._sql_upsert_many = (
            f"INSERT INTO {kv} AS t (key, value, version) "
            "SELECT k, v, 1 FROM unnest($1::text[], $2::bytea[]) AS u(k, v) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = t.version + 1"
        )
        self._sql_insert = (
            f"INSERT INTO {kv} (key, value, version) VALUES ($1, $2, 1) "
            "ON CONFLICT (key) DO NOTHING RETURNING version"
        )
        self._sql_update = (
            f"UPDATE {kv} SET value = $2, version = version + 1 "
            "WHERE key = $1 AND version = $3 RETURNING version"
        )
        self._sql_version = f"SELECT version FROM {kv} WHERE key = $1"
        self._sql_delete = f"DELETE FROM {kv} WHERE key = $1"
        self._sql_delete_version = f"DELETE FROM {kv} WHERE key = $1 AND version = $2 RETURNING 1"
        s = self.settings
        self._batcher: SqlAutoBatcher[asyncpg.Pool] | None = None
        if s.auto_batching:
            self._batcher = SqlAutoBatcher(
                self._shared,
                PostgresBatchRunner(kv),
                max_in_flight=min(MAX_IN_FLIGHT, s.max_pool_size),
            )

    async def get(self, key: str) -> VersionedValue | None:
        if self._batcher is not None:
            found: VersionedValue | None = await self._batcher.call(Kind.GET, "get", (key,))
            return found
        row = await self._shared.run(
            "get", describe_keys([key]), lambda pool: pool.fetchrow(self._sql_get, key)
        )
        return None if row is None else VersionedValue(bytes(row[0]), int(row[1]))

    async def get_many(self, keys: Sequence[str]) -> dict[str, VersionedValue]:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        if self._batcher is not None:
            many: dict[str, VersionedValue] = await self._batcher.call(Kind.GET, "get_many", keys)
            return many
        rows = await self._shared.run(
            "get_many", describe_keys(keys), lambda pool: pool.fetch(self._sql_get_many, keys)
        )
        return {row[0]: VersionedValue(bytes(row[1]), int(row[2])) for row in rows}

    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        value = bytes(value)
        if len(value) > POSTGRES_MAX_VALUE_BYTES:  # a bytea field, and a protocol message
            raise ValueTooLargeError("PostgreSQL", key, len(value), POSTGRES_MAX_VALUE_BYTES)
        if self._batcher is not None:
            written: int = await self._batcher.call(
                Kind.PUT, "put", (key,), value, expected_version
            )
            return written
        if expected_version is None:
            args: tuple[Any, ...]
            sql, args = self._sql_upsert, (key, value)
        elif expected_version == 0:
            sql, args = self._sql_insert, (key, value)
        else:
            sql, args = self._sql_update, (key, value, expected_version)
        what = describe_keys([key])
        version = await self._shared.run("put", what, lambda pool: pool.fetchval(sql, *args))
        if version is None:
            raise VersionConflictError(key, expected_version, await self._version(key))
        return int(version)

    async def put_many(self, items: Mapping[str, bytes]) -> None:
        if not items:
            return
        keys, values = list(items), [bytes(v) for v in items.values()]
        await self._shared.run(
            "put_many",
            describe_keys(keys),
            lambda pool: pool.execute(self._sql_upsert_many, keys, values),
        )

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        what = describe_keys([key])
        if self._batcher is not None and expected_version != 0:
            await self._batcher.call(Kind.DELETE, "delete", (key,), b"", expected_version)
            return
        if expected_version is None:
            await self._shared.run("delete", what, lambda pool: pool.execute(self._sql_delete, key))
            return
        if expected_version == 0:
            actual = await self._version(key)
            if actual != 0:
                raise VersionConflictError(key, 0, actual)
            return
        deleted = await self._shared.run(
            "delete",
            what,
            lambda pool: pool.fetchval(self._sql_delete_version, key, expected_version),
        )
        if deleted is None:
            raise VersionConflictError(key, expected_version, await self._version(key))

    async def _version(self, key: str) -> int:
        """The stored version (0 if absent), for conflict messages."""
        if self._batcher is not None:
            current = await self.get(key)
            return 0 if current is None else current.version
        version = await self._shared.run(
            "get", describe_keys([key]), lambda pool: pool.fetchval(self._sql_version, key)
        )
        return 0 if version is None else int(version)

    async def close(self) -> None:
        """Fail the operations not sent yet, let those in flight finish, then release the
        shared pool (closed with its last user); idempotent."""
        if self._batcher is not None:
            await self._batcher.close()
        await super().close()


class PostgresKeySetStorage(_PostgresStorageBase, KeySetStorage):
    """Key-set storage in a PostgreSQL table of (key, member) rows, paged by keyset pagination."""

    def __init__(
        self, settings: PostgresSettings | None = None, *, _shared: _PostgresPool | None = None
    ) -> None:
        super().__init__(settings, _shared)
        ks = self._shared.ks
        self._sql_add = f"INSERT INTO {ks} (key, member) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        self._sql_remove = f"DELETE FROM {ks} WHERE key = $1 AND member = $2"
        self._sql_first = f"SELECT member FROM {ks} WHERE key = $1 ORDER BY member LIMIT $2"
        self._sql_after = (
            f"SELECT member FROM {ks} WHERE key = $1 AND member > $2 ORDER BY member LIMIT $3"
        )
        self._sql_count = f"SELECT count(*) FROM {ks} WHERE key = $1"

    async def add(self, key: str, member: str) -> None:
        await self._shared.run(
            "add", describe_keys([key]), lambda pool: pool.execute(self._sql_add, key, member)
        )

    async def remove(self, key: str, member: str) -> None:
        await self._shared.run(
            "remove",
            describe_keys([key]),
            lambda pool: pool.execute(self._sql_remove, key, member),
        )

    async def page(self, key: str, *, after: str | None = None, limit: int = 1000) -> KeySetPage:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if after is None:
            args: tuple[Any, ...]
            sql, args = self._sql_first, (key, limit + 1)
        else:
            sql, args = self._sql_after, (key, after, limit + 1)
        rows = await self._shared.run(
            "page", describe_keys([key]), lambda pool: pool.fetch(sql, *args)
        )
        members = [str(row[0]) for row in rows[:limit]]
        return KeySetPage(members, members[-1] if len(rows) > limit else None)

    async def count(self, key: str) -> int:
        n = await self._shared.run(
            "count", describe_keys([key]), lambda pool: pool.fetchval(self._sql_count, key)
        )
        return int(n)


class PostgresStorage(Storage):
    """Key-value and key-set storage in one PostgreSQL schema, sharing one connection pool.

    Example:
        >>> url = "postgresql://postgres@127.0.0.1/app"
        >>> storage = PostgresStorage.from_url(url, schema="infinitic")  # doctest: +SKIP
    """

    key_value: PostgresKeyValueStorage
    key_set: PostgresKeySetStorage

    def __init__(self, settings: PostgresSettings | None = None) -> None:
        self.settings = settings or PostgresSettings()
        shared = _PostgresPool(self.settings)
        super().__init__(
            PostgresKeyValueStorage(_shared=shared), PostgresKeySetStorage(_shared=shared)
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Storage at ``url``; ``options`` are other :class:`PostgresSettings` attributes."""
        return cls(PostgresSettings.from_url(url, **options))
