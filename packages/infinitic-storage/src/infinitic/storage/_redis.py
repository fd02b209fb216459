"""Redis storage (redis.asyncio), installed with the ``redis`` extra.

Layout: a key-value entry is a hash ``<prefix>kv:<key>`` with fields ``v`` (the value) and ``n``
(the version); compare-and-set runs as a Lua script, so the check and the write are one atomic
step on the server. A key set is a sorted set ``<prefix>ks:<key>`` whose scores are all 0, so
members are ordered by their bytes and paged with ZRANGEBYLEX.

Key-value reads, compare-and-set writes and deletes are pipelined automatically: those issued
concurrently go to Redis together, one round trip per batch (see ``_redis_pipeline``).

When it first connects, the storage asks Redis whether it keeps anything on disk (``CONFIG GET
save`` and ``appendonly``) and logs a warning if not: a restart of such a Redis loses every
workflow state.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import SecretStr

from infinitic.exceptions import ValueTooLargeError, VersionConflictError
from infinitic.storage._backend import (
    SharedClient,
    SharedClientUser,
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
    redact_url,
    reveal,
    secret,
    settings_repr,
    url_password,
)

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import RedisError, ResponseError
except ImportError as _e:  # pragma: no cover - exercised by the install-hint test
    raise missing_driver("Redis", "redis", "redis") from _e

from infinitic.storage._redis_pipeline import RedisAutoPipeline

logger = logging.getLogger("infinitic.storage")

_PUT = """
local actual = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= actual then
  return {0, actual}
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'n', actual + 1)
return {1, actual + 1}
"""

_PUT_MANY = """
for i, key in ipairs(KEYS) do
  local actual = tonumber(redis.call('HGET', key, 'n') or '0')
  redis.call('HSET', key, 'v', ARGV[i], 'n', actual + 1)
end
return #KEYS
"""

_DELETE = """
local actual = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= actual then
  return {0, actual}
end
redis.call('DEL', KEYS[1])
return {1, actual}
"""

# Scripts run atomically and block the server, so big batches are cut into chunks.
_BATCH = 500
# The largest bulk string a Redis server takes by default (proto-max-bulk-len, 512 MiB).
REDIS_MAX_VALUE_BYTES = 512 * 1024 * 1024

# Auto-pipelining: the most commands in one pipeline, and the most pipelines in flight at once
# (so connections used by the key-value storage), enough to keep latency low under load.
_PIPELINE_BATCH = 512
_PIPELINES_IN_FLIGHT = 4


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


_PUT_SHA = _sha(_PUT)
_DELETE_SHA = _sha(_DELETE)


def _bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


def _text(data: object) -> str:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data).decode(errors="replace")
    return "" if data is None else str(data)


def _config_value(reply: Mapping[Any, Any], name: str) -> str:
    """The value of ``name`` in a CONFIG GET reply (keys and values as bytes or text)."""
    for key, value in reply.items():
        if _text(key) == name:
            return _text(value).strip()
    return ""


@dataclass(frozen=True, kw_only=True)
class RedisSettings:
    """How to reach Redis.

    Attributes:
        url: a ``redis://`` or ``rediss://`` (TLS) URL; when given it replaces host, port, db,
            username and password (``password`` is used when the URL has none).
        password: a :class:`pydantic.SecretStr` (a ``str`` is converted), shown masked in the
            repr; a password in ``url`` is masked there too.
        ssl: connect with TLS. ``ssl=True`` with a ``redis://`` URL means TLS as well (the
            connection never falls back to plaintext); a ``rediss://`` URL means TLS whatever
            ``ssl`` says. The ``ssl_*`` options apply in both cases: the server certificate is
            verified against ``ssl_ca_certs`` (or the system's certificates) and, with
            ``ssl_check_hostname``, its name.
        key_prefix: prepended to every Redis key, so several applications can share a database.
        max_connections: size of the connection pool. With auto-pipelining, the key-value
            storage uses at most 4 connections however many operations run at once.
        connect_timeout: seconds to wait for a connection.
        operation_timeout: seconds to wait for one operation (waiting for its batch and for a
            free connection included).
        retries: how many times the driver retries a command after a connection error, on a new
            connection; a write retried after a lost reply may then report a
            VersionConflictError for its own write, which callers handle as any conflict.
        client_name: the name shown by ``CLIENT LIST``.
        auto_pipelining: send the key-value gets, compare-and-sets and deletes issued
            concurrently together, one pipeline (one round trip) per batch. False sends each
            operation alone, as soon as it is called, on a connection of its own.
    """

    url: str | None = None
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: SecretStr | str | None = None
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    key_prefix: str = "infinitic:"
    max_connections: int = 50
    connect_timeout: float = 5.0
    operation_timeout: float = 10.0
    retries: int = 1
    client_name: str | None = "infinitic"
    auto_pipelining: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "password", secret(self.password))
        if self.url is not None and self.ssl:
            scheme = urlsplit(self.url).scheme
            if scheme == "unix":
                raise ValueError(
                    f"ssl=True cannot apply to the unix socket URL {redact_url(self.url)!r}: "
                    "use a redis:// or rediss:// URL, or ssl=False"
                )

    def __repr__(self) -> str:
        return settings_repr(self)

    @property
    def tls(self) -> bool:
        """Whether connections use TLS (``ssl=True`` or a ``rediss://`` URL)."""
        if self.ssl:
            return True
        return self.url is not None and urlsplit(self.url).scheme == "rediss"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisSettings:
        """Settings for ``url``; ``options`` set the other attributes."""
        return cls(url=url, **options)


class _RedisClient(SharedClient["aioredis.Redis"]):
    backend = "Redis"

    def __init__(self, settings: RedisSettings) -> None:
        super().__init__(settings.operation_timeout)
        self.settings = settings
        self.scripts: dict[str, Any] = {}
        self.secrets = tuple(
            p for p in (reveal(settings.password), url_password(settings.url)) if p
        )

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        return (RedisError,)

    async def _open(self) -> aioredis.Redis:
        s = self.settings
        # A blocking pool: past max_connections, an operation waits for a free connection
        # (up to the operation timeout) instead of failing with MaxConnectionsError. No socket
        # timeout: every operation already runs under the operation timeout (a lost connection
        # is dropped when its read is cancelled), and a timer per reply would cost as much CPU
        # as the rest of reading it.
        options: dict[str, Any] = {
            "max_connections": s.max_connections,
            "timeout": s.operation_timeout,
            "socket_connect_timeout": s.connect_timeout,
            "socket_timeout": None,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), s.retries),
            "client_name": s.client_name,
        }
        if s.tls:
            # Given with a redis:// URL too: the URL's own options still win (redis-py), but
            # nothing in a redis:// URL turns TLS off once the connection class is TLS.
            options.update(
                connection_class=aioredis.SSLConnection,
                ssl_cert_reqs="required",
                ssl_ca_certs=s.ssl_ca_certs,
                ssl_certfile=s.ssl_certfile,
                ssl_keyfile=s.ssl_keyfile,
                ssl_check_hostname=s.ssl_check_hostname,
            )
        password = reveal(s.password)
        if s.url is not None:
            if password is not None:
                options["password"] = password
            pool = aioredis.BlockingConnectionPool.from_url(s.url, **options)
        else:
            pool = aioredis.BlockingConnectionPool(
                host=s.host,
                port=s.port,
                db=s.db,
                username=s.username,
                password=password,
                **options,
            )
        client = aioredis.Redis.from_pool(pool)
        try:
            await self._warn_if_nothing_on_disk(client)
        except BaseException:
            await client.aclose()
            raise
        self.scripts = {"put_many": client.register_script(_PUT_MANY)}
        return client

    def _where(self) -> str:
        s = self.settings
        return redact_url(s.url) if s.url is not None else f"{s.host}:{s.port}"

    async def _warn_if_nothing_on_disk(self, client: aioredis.Redis) -> None:
        """Log a warning when Redis keeps neither RDB snapshots nor an append-only file.

        Managed services often disable CONFIG (or an ACL forbids it): then nothing is said.
        Connection errors propagate, so a server that cannot be reached fails the first call.
        """
        try:
            save = await client.config_get("save")
            appendonly = await client.config_get("appendonly")
        except ResponseError as e:
            logger.debug("Redis at %s: persistence not checked (%s)", self._where(), e)
            return
        snapshots = _config_value(save, "save")
        aof = _config_value(appendonly, "appendonly")
        if not snapshots and aof.lower() == "no":
            logger.warning(
                "Redis at %s keeps nothing on disk (no RDB snapshot: save is empty; no AOF: "
                "appendonly is no): a restart of Redis loses every workflow state and tag. "
                "Turn persistence on (appendonly yes, or save rules) for anything but tests.",
                self._where(),
            )

    async def _close(self, client: aioredis.Redis) -> None:
        await client.aclose()


class _RedisStorageBase(SharedClientUser[RedisSettings, _RedisClient]):
    _settings_type = RedisSettings
    _client_type = _RedisClient
    _space = b""

    def __init__(
        self, settings: RedisSettings | None = None, shared: _RedisClient | None = None
    ) -> None:
        super().__init__(settings, shared)
        self._prefix = self.settings.key_prefix.encode() + self._space

    def _key(self, key: str) -> bytes:
        return self._prefix + key.encode()


class RedisKeyValueStorage(_RedisStorageBase, KeyValueStorage):
    """Key-value storage in Redis, with atomic compare-and-set by a Lua script.

    The pool opens on the first call. Gets, compare-and-sets and deletes issued concurrently
    are sent together, one pipeline per batch (unless ``auto_pipelining`` is off). Every
    operation raises StorageError when Redis fails (naming the key); the next call reconnects.

    Example:
        >>> kv = RedisKeyValueStorage.from_url("redis://127.0.0.1:6379/0")  # doctest: +SKIP
    """

    _space = b"kv:"

    def __init__(
        self, settings: RedisSettings | None = None, *, _shared: _RedisClient | None = None
    ) -> None:
        super().__init__(settings, _shared)
        s = self.settings
        self._pipeline = RedisAutoPipeline(
            self._shared,
            {_PUT_SHA: _PUT, _DELETE_SHA: _DELETE},
            max_batch=_PIPELINE_BATCH,
            max_in_flight=min(_PIPELINES_IN_FLIGHT, s.max_connections),
            enabled=s.auto_pipelining,
        )

    async def get(self, key: str) -> VersionedValue | None:
        command = ("HMGET", self._key(key), b"v", b"n")
        ((value, version),) = await self._pipeline.call("get", (key,), (command,))
        if value is None or version is None:
            return None
        return VersionedValue(_bytes(value), int(version))

    async def get_many(self, keys: Sequence[str]) -> dict[str, VersionedValue]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, VersionedValue] = {}
        if not keys:
            return out
        commands = [("HMGET", self._key(key), b"v", b"n") for key in keys]
        rows = await self._pipeline.call("get_many", keys, commands)
        for key, (value, version) in zip(keys, rows, strict=True):
            if value is not None and version is not None:
                out[key] = VersionedValue(_bytes(value), int(version))
        return out

    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        if len(value) > REDIS_MAX_VALUE_BYTES:  # sent anyway, the server drops the connection
            hint = " (Redis's default proto-max-bulk-len)"
            raise ValueTooLargeError("Redis", key, len(value), REDIS_MAX_VALUE_BYTES, hint)
        expected = b"" if expected_version is None else str(expected_version).encode()
        command = ("EVALSHA", _PUT_SHA, 1, self._key(key), bytes(value), expected)
        ((ok, version),) = await self._pipeline.call("put", (key,), (command,))
        if not ok:
            raise VersionConflictError(key, expected_version, int(version))
        return int(version)

    async def put_many(self, items: Mapping[str, bytes]) -> None:
        pairs = list(items.items())
        if not pairs:
            return
        await self._shared.client()
        script = self._shared.scripts["put_many"]
        for i in range(0, len(pairs), _BATCH):
            chunk = pairs[i : i + _BATCH]
            what = describe_keys([k for k, _ in chunk])
            async with self._shared.translating("put_many", what):
                await script(keys=[self._key(k) for k, _ in chunk], args=[v for _, v in chunk])

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        expected = b"" if expected_version is None else str(expected_version).encode()
        command = ("EVALSHA", _DELETE_SHA, 1, self._key(key), expected)
        ((ok, actual),) = await self._pipeline.call("delete", (key,), (command,))
        if not ok:
            raise VersionConflictError(key, expected_version, int(actual))

    async def close(self) -> None:
        """Fail the operations not sent yet, let those in flight finish, then release the
        shared pool (closed with its last user); idempotent."""
        await self._pipeline.close()
        await super().close()


class RedisKeySetStorage(_RedisStorageBase, KeySetStorage):
    """Key-set storage in Redis: sorted sets with equal scores, paged by ZRANGEBYLEX.

    Members are ordered by their UTF-8 bytes, which is the order of Python strings.
    """

    _space = b"ks:"

    def __init__(
        self, settings: RedisSettings | None = None, *, _shared: _RedisClient | None = None
    ) -> None:
        super().__init__(settings, _shared)

    async def add(self, key: str, member: str) -> None:
        client = await self._shared.client()
        async with self._shared.translating("add", describe_keys([key])):
            await client.zadd(self._key(key), {member.encode(): 0})

    async def remove(self, key: str, member: str) -> None:
        client = await self._shared.client()
        async with self._shared.translating("remove", describe_keys([key])):
            await client.zrem(self._key(key), member.encode())

    async def page(self, key: str, *, after: str | None = None, limit: int = 1000) -> KeySetPage:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        start = b"-" if after is None else b"(" + after.encode()
        client = await self._shared.client()
        async with self._shared.translating("page", describe_keys([key])):
            raw = await client.zrangebylex(self._key(key), start, b"+", start=0, num=limit + 1)
        members = [_bytes(m).decode() for m in raw[:limit]]
        more = len(raw) > limit
        return KeySetPage(members, members[-1] if more else None)

    async def count(self, key: str) -> int:
        client = await self._shared.client()
        async with self._shared.translating("count", describe_keys([key])):
            return int(await client.zcard(self._key(key)))


class RedisStorage(Storage):
    """Key-value and key-set storage in one Redis database, sharing one connection pool.

    Example:
        >>> storage = RedisStorage.from_url("redis://127.0.0.1:6379/0")  # doctest: +SKIP
        >>> async with storage:  # doctest: +SKIP
        ...     await storage.key_value.put("k", b"v", expected_version=0)
    """

    key_value: RedisKeyValueStorage
    key_set: RedisKeySetStorage

    def __init__(self, settings: RedisSettings | None = None) -> None:
        self.settings = settings or RedisSettings()
        shared = _RedisClient(self.settings)
        super().__init__(RedisKeyValueStorage(_shared=shared), RedisKeySetStorage(_shared=shared))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Storage at ``url``; ``options`` are other :class:`RedisSettings` attributes."""
        return cls(RedisSettings.from_url(url, **options))
