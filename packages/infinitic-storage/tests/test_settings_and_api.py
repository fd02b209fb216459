"""Backend settings, table creation and the package's public names."""

from __future__ import annotations

import asyncio

import pytest

import infinitic.storage
from infinitic.storage import (
    MySQLSettings,
    PostgresSettings,
    PostgresStorage,
    RedisSettings,
    Storage,
    VersionedValue,
)


def test_public_names_are_pinned() -> None:
    assert infinitic.storage.__all__ == [
        "CompressedKeyValueStorage",
        "Compression",
        "InMemoryKeySetStorage",
        "InMemoryKeyValueStorage",
        "InMemoryStorage",
        "KeySetPage",
        "KeySetStorage",
        "KeyValueStorage",
        "MySQLKeySetStorage",
        "MySQLKeyValueStorage",
        "MySQLSettings",
        "MySQLStorage",
        "PostgresKeySetStorage",
        "PostgresKeyValueStorage",
        "PostgresSettings",
        "PostgresStorage",
        "RedisKeySetStorage",
        "RedisKeyValueStorage",
        "RedisSettings",
        "RedisStorage",
        "Storage",
        "VersionedValue",
    ]
    for name in infinitic.storage.__all__:
        assert getattr(infinitic.storage, name) is not None
    with pytest.raises(AttributeError):
        _ = infinitic.storage.NoSuchStorage  # type: ignore[attr-defined]


def test_mysql_settings_from_url() -> None:
    s = MySQLSettings.from_url("mysql://app%40x:p%3Ass@db.example:3307/states?ssl=true")
    assert s.password is not None
    assert (s.user, s.password.get_secret_value(), s.host, s.port, s.database, s.ssl) == (
        "app@x",
        "p:ss",
        "db.example",
        3307,
        "states",
        True,
    )
    s = MySQLSettings.from_url("mysql://root@127.0.0.1/", database="other", max_pool_size=3)
    assert (s.port, s.database, s.max_pool_size, s.password) == (3306, "other", 3, None)
    with pytest.raises(ValueError, match="not a MySQL URL"):
        MySQLSettings.from_url("postgresql://x@y/z")


@pytest.mark.parametrize(
    "make",
    [
        lambda: PostgresSettings(schema="bad-name"),
        lambda: PostgresSettings(key_value_table='x"; DROP TABLE y; --'),
        lambda: PostgresSettings(min_pool_size=5, max_pool_size=2),
        lambda: MySQLSettings(database="1abc"),
        lambda: MySQLSettings(key_set_table="a`b"),
        lambda: MySQLSettings(max_pool_size=0),
    ],
)
def test_invalid_settings_are_refused(make: object) -> None:
    with pytest.raises(ValueError, match="invalid"):
        make()  # type: ignore[operator]


def test_redis_settings_from_url() -> None:
    s = RedisSettings.from_url("rediss://h:6380/2", key_prefix="app:", retries=3)
    assert (s.url, s.key_prefix, s.retries) == ("rediss://h:6380/2", "app:", 3)


@pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_postgres_workers_creating_tables_at_once(database: Storage) -> None:
    settings: PostgresSettings = database.settings  # type: ignore[attr-defined]
    names = {"key_value_table": "states", "key_set_table": "tags"}
    others = [
        PostgresStorage(PostgresSettings(url=settings.url, schema=settings.schema, **names))
        for _ in range(5)
    ]
    try:
        versions = await asyncio.gather(*(s.key_value.put("k", b"v") for s in others))
        assert sorted(versions) == [1, 2, 3, 4, 5]
        await others[0].key_set.add("t", "m")
        assert await others[1].key_set.count("t") == 1
        # the default tables of the fixture's storage are other tables
        assert await database.key_value.get("k") is None
        assert await others[2].key_value.get("k") == VersionedValue(b"v", 5)
    finally:
        for s in others:
            await s.close()


def test_mysql_upsert_uses_a_row_alias_on_mysql_8() -> None:
    from infinitic.storage._mysql import _MySQLPool

    pool = _MySQLPool(MySQLSettings(database="db", key_value_table="kv"))
    assert "VALUES(v)" in pool.upsert("(%s, %s, 1)", "version + 1")  # MariaDB, older MySQL
    pool.row_alias = True
    sql = pool.upsert("(%s, %s, 1)", "version + 1")
    assert sql == (
        "INSERT INTO `db`.`kv` (k, v, version) VALUES (%s, %s, 1) AS new "
        "ON DUPLICATE KEY UPDATE v = new.v, version = version + 1"
    )


@pytest.mark.redis
async def test_redis_operations_beyond_the_pool_size_wait_for_a_connection() -> None:
    # Two worker processes once exhausted the pool: MaxConnectionsError, retried. An operation
    # past max_connections waits for a free connection instead.
    from infinitic.storage import RedisStorage

    from .conftest import REDIS_URL, drop_redis_keys, require, unique

    prefix = unique("infinitic-pool") + ":"
    storage = RedisStorage.from_url(
        require("Redis", REDIS_URL), key_prefix=prefix, max_connections=2
    )
    try:
        kv = storage.key_value
        versions = await asyncio.gather(*(kv.put(f"k{i}", b"v") for i in range(50)))
        assert versions == [1] * 50
        found = await asyncio.gather(*(kv.get(f"k{i}") for i in range(50)))
        assert found == [VersionedValue(b"v", 1)] * 50
    finally:
        await storage.close()
        await drop_redis_keys(REDIS_URL, prefix)
