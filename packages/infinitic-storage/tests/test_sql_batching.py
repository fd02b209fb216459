"""PostgreSQL and MySQL auto-batching: concurrent key-value operations share round trips, keep
their own results and errors, and survive killed connections, cancellations and close.

Round trips are counted (and held or cut) where the driver sends a statement
(asyncpg's ``Connection._execute``, aiomysql's ``Connection.query``), for the statements naming
the test's schema or database only; no assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from infinitic.exceptions import StorageError, VersionConflictError
from infinitic.storage import (
    KeyValueStorage,
    MySQLKeyValueStorage,
    MySQLSettings,
    PostgresKeyValueStorage,
    VersionedValue,
)

from .conftest import (
    MYSQL_URL,
    POSTGRES_URL,
    drop_mysql_database,
    drop_postgres_schema,
    require,
    unique,
)

BACKENDS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
LABEL = {"postgres": "PostgreSQL", "mysql": "MySQL"}


class Wire:
    """The round trips of the statements naming ``name``: recorded (how many operations each),
    and held or cut on demand."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sends: list[int] = []  # the operations of each round trip, in order
        self.sent = asyncio.Condition()
        self.hold: asyncio.Event | None = None  # a round trip waits for it before being sent
        self.cut = 0  # how many of the next round trips of several operations to cut
        self.kill: Callable[[Any], Awaitable[None]] | None = None  # cuts a connection
        self.on = True  # off: statements pass untouched (the clean-up's)
        self.outside: set[int] = set()  # ids of connections whose statements pass untouched

    async def wait_sends(self, count: int) -> None:
        async with self.sent:
            await self.sent.wait_for(lambda: len(self.sends) >= count)

    async def passing(self, connection: Any, operations: int) -> None:
        self.sends.append(operations)
        async with self.sent:
            self.sent.notify_all()
        if self.hold is not None:
            await self.hold.wait()
        if self.cut and operations > 1:
            self.cut -= 1
            assert self.kill is not None
            await self.kill(connection)


def _postgres_operations(args: Any) -> int:
    """Keys of a batch statement (one array of keys per part), else 1."""
    arrays = [a for a in args if isinstance(a, list) and a and isinstance(a[0], str)]
    return sum(len(a) for a in arrays) if arrays else 1


def _mysql_operations(sql: str) -> int:
    """Statements of an operation (the keys of a multi-key SELECT)."""
    count = 0
    for statement in sql.split(";"):
        if statement in ("START TRANSACTION", "COMMIT", "ROLLBACK"):
            continue
        is_batch_read = statement.startswith("SELECT") and " IN (" in statement
        count += statement.count("X'") if is_batch_read else 1
    return count


class Storages:
    """Key-value storages of one backend on one fresh schema or database, whose statements go
    through ``wire``."""

    def __init__(self, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.backend = backend
        self.label = LABEL[backend]
        self.name = unique("batching")
        self.app = self.name + "_app"  # PostgreSQL's application_name
        self.opened: list[KeyValueStorage] = []
        self.wire = Wire(self.name)
        if backend == "postgres":
            self.url = require("PostgreSQL", POSTGRES_URL)
            self._install_postgres(monkeypatch)
        else:
            self.url = require("MySQL", MYSQL_URL)
            self._install_mysql(monkeypatch)

    def open(self, **options: Any) -> KeyValueStorage:
        kv: KeyValueStorage
        if self.backend == "postgres":
            kv = PostgresKeyValueStorage.from_url(
                self.url, schema=self.name, application_name=self.app, **options
            )
        else:
            kv = MySQLKeyValueStorage.from_url(self.url, database=self.name, **options)
        self.opened.append(kv)
        return kv

    async def close(self) -> None:
        self.wire.on = False
        for kv in self.opened:
            await kv.close()
        if self.backend == "postgres":
            await drop_postgres_schema(self.url, self.name)
        else:
            await drop_mysql_database(self.url, self.name)

    def _install_postgres(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from asyncpg.connection import Connection

        original = Connection._execute
        wire = self.wire

        async def execute(conn: Any, query: str, args: Any, *rest: Any, **options: Any) -> Any:
            if wire.on and wire.name in query:
                await wire.passing(conn, _postgres_operations(args))
            return await original(conn, query, args, *rest, **options)

        monkeypatch.setattr(Connection, "_execute", execute)
        wire.kill = self._kill_postgres

    async def _kill_postgres(self, connection: Any) -> None:
        """Terminate the backend of the connection about to send, and wait until it is gone."""
        import asyncpg

        admin = await asyncpg.connect(self.url)
        try:
            pid = connection.get_server_pid()
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
        finally:
            await admin.close()

    def _install_mysql(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from aiomysql.connection import Connection

        original = Connection.query
        wire = self.wire

        async def query(conn: Any, sql: str, unbuffered: bool = False) -> Any:
            if wire.on and id(conn) not in wire.outside and wire.name in sql:
                await wire.passing(conn, _mysql_operations(sql))
            return await original(conn, sql, unbuffered)

        monkeypatch.setattr(Connection, "query", query)
        wire.kill = self._kill_mysql

    async def _kill_mysql(self, connection: Any) -> None:
        """Kill the connection about to send, and wait until the server dropped it."""
        thread_id = int(connection.thread_id())
        await self.admin_mysql(f"KILL {thread_id}")
        find = f"SELECT ID FROM information_schema.PROCESSLIST WHERE ID = {thread_id}"
        while await self.admin_mysql(find):  # noqa: ASYNC110 - the server's state, no event
            await asyncio.sleep(0.01)

    @contextlib.asynccontextmanager
    async def mysql_session(self) -> AsyncIterator[Any]:
        """A MySQL connection of its own, outside the wire."""
        import aiomysql

        s = MySQLSettings.from_url(self.url)
        conn = await aiomysql.connect(
            host=s.host, port=s.port, user=s.user, password=s.password or "", autocommit=True
        )
        self.wire.outside.add(id(conn))
        try:
            yield conn
        finally:
            conn.close()

    async def admin_mysql(self, sql: str) -> list[Any]:
        import aiomysql

        s = MySQLSettings.from_url(self.url)
        admin = await aiomysql.connect(
            host=s.host, port=s.port, user=s.user, password=s.password or "", autocommit=True
        )
        try:
            async with admin.cursor() as cur:
                await cur.execute(sql)
                return list(await cur.fetchall())
        finally:
            admin.close()

    async def connections(self, kv: KeyValueStorage) -> int:
        """How many connections ``kv``'s pool holds."""
        if self.backend == "postgres":
            import asyncpg

            admin = await asyncpg.connect(self.url)
            try:
                count = await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", self.app
                )
            finally:
                await admin.close()
            return int(count)
        pool = kv._shared._client  # type: ignore[attr-defined]
        return int(pool.size)


@pytest.fixture(params=BACKENDS)
async def storages(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Storages]:
    """Storages of each database, closed and removed after the test."""
    opened = Storages(request.param, monkeypatch)
    try:
        yield opened
    finally:
        await opened.close()


async def test_concurrent_compare_and_sets_on_one_key_have_one_winner_per_version(
    storages: Storages,
) -> None:
    kv = storages.open()
    assert await kv.put("k", b"start") == 1
    for version in range(1, 6):
        writes = [kv.put("k", f"w{i}".encode(), expected_version=version) for i in range(50)]
        results = await asyncio.gather(*writes, return_exceptions=True)
        winners = [i for i, r in enumerate(results) if r == version + 1]
        assert len(winners) == 1
        conflicts = [r for r in results if isinstance(r, VersionConflictError)]
        assert len(conflicts) == 49
        assert {(c.key, c.expected, c.actual) for c in conflicts} == {("k", version, version + 1)}
        assert await kv.get("k") == VersionedValue(f"w{winners[0]}".encode(), version + 1)


async def test_concurrent_inserts_of_one_absent_key_have_one_winner(storages: Storages) -> None:
    kv = storages.open()
    await kv.put("other", b"v")
    results = await asyncio.gather(
        *(kv.put("new", f"w{i}".encode(), expected_version=0) for i in range(30)),
        return_exceptions=True,
    )
    assert sorted(r for r in results if isinstance(r, int)) == [1]
    conflicts = [r for r in results if isinstance(r, VersionConflictError)]
    assert {(c.key, c.expected, c.actual) for c in conflicts} == {("new", 0, 1)}
    assert len(conflicts) == 29


async def test_concurrent_gets_and_puts_on_many_keys_get_their_own_results(
    storages: Storages,
) -> None:
    kv = storages.open()
    keys = [f"key-{i}" for i in range(300)]
    assert await asyncio.gather(*(kv.put(k, k.encode()) for k in keys)) == [1] * 300

    async def read_then_write(key: str) -> tuple[VersionedValue | None, int, VersionedValue | None]:
        before = await kv.get(key)
        assert before is not None
        version = await kv.put(key, before.value + b"!", expected_version=before.version)
        return before, version, await kv.get(key)

    results = await asyncio.gather(*(read_then_write(k) for k in keys))
    for key, (before, version, after) in zip(keys, results, strict=True):
        assert before == VersionedValue(key.encode(), 1)
        assert version == 2
        assert after == VersionedValue(key.encode() + b"!", 2)
    found, *_ = await asyncio.gather(
        kv.get_many(["absent", *keys[:3]]),
        *(kv.delete(k, expected_version=2) for k in keys[:100]),
        *(kv.delete(k) for k in keys[100:200]),
    )
    assert found == {k: VersionedValue(k.encode() + b"!", 2) for k in keys[:3]}
    assert await kv.get_many(keys) == {k: VersionedValue(k.encode() + b"!", 2) for k in keys[200:]}


async def test_concurrent_operations_share_round_trips(storages: Storages) -> None:
    wire = storages.wire
    kv = storages.open()
    await kv.put("k", b"v")
    wire.sends.clear()
    found = await asyncio.gather(*(kv.get(f"k{i}") for i in range(200)))
    assert found == [None] * 200
    # the first finds the storage idle and goes at once; the others share the next round trip
    assert wire.sends == [1, 199]
    wire.sends.clear()
    written = await asyncio.gather(
        *(kv.put(f"k{i}", b"v", expected_version=0) for i in range(1200))
    )
    assert written == [1] * 1200
    # at most 512 operations a round trip; the three batches go at once, in any order
    assert wire.sends[0] == 1
    assert sorted(wire.sends[1:]) == [175, 512, 512]
    wire.sends.clear()
    # a get_many bigger than a batch is never split
    others = [kv.get(f"k{i}") for i in range(10)]
    many = asyncio.ensure_future(kv.get_many([f"k{i}" for i in range(600)]))  # first: alone
    got = await asyncio.gather(*others)
    assert len(await many) == 600
    assert got == [VersionedValue(b"v", 1)] * 10
    assert wire.sends == [600, 10]


async def test_without_auto_batching_each_operation_is_a_round_trip(storages: Storages) -> None:
    wire = storages.wire
    kv = storages.open(auto_batching=False)
    await kv.put("k", b"v")
    wire.sends.clear()
    found = await asyncio.gather(*(kv.get("k") for _ in range(20)))
    assert found == [VersionedValue(b"v", 1)] * 20
    assert wire.sends == [1] * 20


async def test_operations_are_sent_without_waiting_for_a_timer(storages: Storages) -> None:
    wire = storages.wire
    kv = storages.open()
    await kv.put("k", b"v")
    await asyncio.gather(*(kv.get("k") for _ in range(10)))  # two connections open: no I/O
    wire.sends.clear()
    wire.hold = asyncio.Event()

    async def turns_until_sent(count: int) -> None:
        for _ in range(20):  # event loop turns, no time: a flush behind a timer would not run
            if len(wire.sends) == count:
                return
            await asyncio.sleep(0)

    alone = asyncio.ensure_future(kv.get("k"))  # an idle storage sends it at once
    await turns_until_sent(1)
    assert wire.sends == [1]
    queued = asyncio.ensure_future(kv.get("k"))  # queued behind it, flushed at the next turn
    await turns_until_sent(2)
    assert wire.sends == [1, 1]
    wire.hold.set()
    assert [await alone, await queued] == [VersionedValue(b"v", 1)] * 2


async def test_the_writes_of_one_key_run_in_their_order(storages: Storages) -> None:
    wire = storages.wire
    kv = storages.open()
    await kv.put("k", b"v")
    wire.sends.clear()
    wire.hold = asyncio.Event()
    alone = asyncio.ensure_future(kv.get("other"))
    await wire.wait_sends(1)
    writes = [
        asyncio.ensure_future(kv.put("k", b"a", expected_version=1)),
        asyncio.ensure_future(kv.put("k", b"b", expected_version=2)),
        asyncio.ensure_future(kv.put("k", b"c", expected_version=1)),
        asyncio.ensure_future(kv.delete("k", expected_version=3)),
        asyncio.ensure_future(kv.put("k", b"d", expected_version=0)),
    ]
    await asyncio.sleep(0)
    wire.hold.set()
    first, second, third, deleted, inserted = await asyncio.gather(*writes, return_exceptions=True)
    assert await alone is None
    assert (first, second, deleted, inserted) == (2, 3, None, 1)
    assert isinstance(third, VersionConflictError)
    assert (third.expected, third.actual) in ((1, 3), (1, 0), (1, 1))  # read after the batch
    assert await kv.get("k") == VersionedValue(b"d", 1)


async def test_a_write_waits_for_the_batch_in_flight_writing_its_key(
    storages: Storages,
) -> None:
    wire = storages.wire
    kv = storages.open()
    await kv.put("k", b"v")
    wire.sends.clear()
    wire.hold = asyncio.Event()
    first = asyncio.ensure_future(kv.put("k", b"a", expected_version=1))  # alone, held
    await wire.wait_sends(1)
    second = asyncio.ensure_future(kv.put("k", b"b", expected_version=2))
    others = [asyncio.ensure_future(kv.put(f"o{i}", b"o")) for i in range(3)]
    await wire.wait_sends(2)
    assert wire.sends == [1, 3]  # the second write of "k" waits for the first
    wire.hold.set()
    assert (await first, await second) == (2, 3)
    assert await asyncio.gather(*others) == [1, 1, 1]
    assert wire.sends == [1, 3, 1]
    assert await kv.get("k") == VersionedValue(b"b", 3)


async def test_an_operations_error_fails_only_its_caller(storages: Storages) -> None:
    wire = storages.wire
    kv = storages.open()
    alone = storages.open(auto_batching=False)
    # PostgreSQL text holds no NUL; a MySQL key holds at most 1024 bytes.
    bad = "bad\x00" if storages.backend == "postgres" else "x" * 2000
    await kv.put("good", b"v")
    wire.sends.clear()
    results = await asyncio.gather(
        kv.get("good"),  # alone
        kv.put("after", b"x", expected_version=0),
        kv.put(bad, b"x"),
        kv.get("good"),
        kv.put("other", b"x", expected_version=0),
        kv.delete("good", expected_version=3),
        return_exceptions=True,
    )
    assert wire.sends[:2] == [1, 5]
    good, after, bad_put, good_again, other, conflict = results
    assert good == good_again == VersionedValue(b"v", 1)
    assert (after, other) == (1, 1)
    assert isinstance(conflict, VersionConflictError)
    assert (conflict.key, conflict.expected, conflict.actual) == ("good", 3, 1)
    assert isinstance(bad_put, StorageError)
    assert not isinstance(bad_put, VersionConflictError)
    with pytest.raises(StorageError) as unbatched:
        await alone.put(bad, b"x")
    assert str(bad_put) == str(unbatched.value)  # worded as an operation alone
    assert f"{storages.label} put of key {bad!r} failed" in str(bad_put)
    # the other writes happened once
    assert await kv.get_many(["after", "other", "good"]) == {
        "after": VersionedValue(b"x", 1),
        "other": VersionedValue(b"x", 1),
        "good": VersionedValue(b"v", 1),
    }


async def test_a_key_the_driver_cannot_encode_fails_only_its_caller(storages: Storages) -> None:
    kv = storages.open()
    alone = storages.open(auto_batching=False)
    bad = "lone \ud800 surrogate"
    await kv.put("good", b"v")
    results = await asyncio.gather(
        kv.get("good"),  # alone
        kv.put(bad, b"x"),
        kv.get(bad),
        kv.put("other", b"x", expected_version=0),
        kv.get("good"),
        return_exceptions=True,
    )
    good, bad_put, bad_get, other, good_again = results
    assert good == good_again == VersionedValue(b"v", 1)
    assert other == 1
    for error, call in ((bad_put, alone.put(bad, b"x")), (bad_get, alone.get(bad))):
        with pytest.raises(Exception) as unbatched:
            await call
        assert type(error) is type(unbatched.value)  # as an operation alone fails
        assert not isinstance(error, VersionConflictError)


async def test_a_killed_connection_is_replaced_and_the_batch_sent_again(
    storages: Storages,
) -> None:
    wire = storages.wire
    kv = storages.open()
    await kv.put("k", b"v")
    wire.sends.clear()
    wire.cut = 1
    alone, *batch = await asyncio.gather(
        kv.get("k"),  # goes alone, at once
        kv.put("k", b"w", expected_version=1),  # these three share the next round trip
        kv.get("x"),
        kv.put("y", b"y", expected_version=0),
    )
    assert wire.cut == 0
    assert wire.sends == [1, 3, 3]  # cut before it was sent, then sent again
    assert alone == VersionedValue(b"v", 1)
    assert batch == [2, None, 1]
    assert await kv.get("k") == VersionedValue(b"w", 2)


async def test_a_connection_killed_twice_fails_its_batch_and_the_next_call_succeeds(
    storages: Storages,
) -> None:
    wire = storages.wire
    kv = storages.open()
    await kv.put("k", b"v")
    wire.sends.clear()
    wire.cut = 2
    alone, *batch = await asyncio.gather(
        kv.get("k"),
        kv.put("k", b"w", expected_version=1),
        kv.get("x"),
        kv.delete("z"),
        return_exceptions=True,
    )
    assert wire.cut == 0
    assert wire.sends == [1, 3, 3]
    assert alone == VersionedValue(b"v", 1)
    expected = [("put", "k"), ("get", "x"), ("delete", "z")]
    for result, (operation, key) in zip(batch, expected, strict=True):
        assert isinstance(result, StorageError), result
        assert f"{storages.label} {operation} of key {key!r} failed" in str(result)
        assert "the operation can be retried" in str(result)
    # the connections were killed before the batch was sent: nothing was written
    assert await kv.get("k") == VersionedValue(b"v", 1)
    assert await kv.put("k", b"w", expected_version=1) == 2


async def test_cancelled_callers_do_not_break_the_batcher(storages: Storages) -> None:
    wire = storages.wire
    kv = storages.open(max_pool_size=2)  # two round trips in flight, then operations wait
    await kv.put("k", b"v")
    wire.sends.clear()
    wire.hold = asyncio.Event()
    first = asyncio.ensure_future(kv.get("k"))  # alone
    await wire.wait_sends(1)
    in_flight = [asyncio.ensure_future(kv.put(f"a{i}", b"v")) for i in range(10)]
    await wire.wait_sends(2)
    queued = [asyncio.ensure_future(kv.put(f"b{i}", b"v")) for i in range(10)]
    await asyncio.sleep(0)
    for task in in_flight[::2] + queued[::2]:
        task.cancel()
    wire.hold.set()
    results = await asyncio.gather(*in_flight, *queued, return_exceptions=True)
    assert await first == VersionedValue(b"v", 1)
    cancelled = [isinstance(r, asyncio.CancelledError) for r in results]
    assert cancelled == [True, False] * 10
    assert [r for r in results if not isinstance(r, BaseException)] == [1] * 10
    assert wire.sends == [1, 10, 5]
    # sent before their callers left, the in-flight writes happened; the queued ones did not
    assert await kv.get_many([f"a{i}" for i in range(10)]) == {
        f"a{i}": VersionedValue(b"v", 1) for i in range(10)
    }
    assert await kv.get_many([f"b{i}" for i in range(10)]) == {
        f"b{i}": VersionedValue(b"v", 1) for i in range(1, 10, 2)
    }
    found = await asyncio.gather(*(kv.get("k") for _ in range(100)))
    assert found == [VersionedValue(b"v", 1)] * 100


async def test_the_operation_timeout_bounds_each_wait(storages: Storages) -> None:
    wire = storages.wire
    kv = storages.open(operation_timeout=0.2, max_pool_size=1)
    await kv.put("k", b"v")
    wire.sends.clear()
    wire.hold = asyncio.Event()  # the server never answers
    in_flight = asyncio.ensure_future(kv.get("k"))
    await wire.wait_sends(1)
    queued = asyncio.ensure_future(kv.put("k", b"w"))
    label = storages.label
    with pytest.raises(StorageError, match=rf"{label} get of key 'k' timed out after 0\.2s"):
        await in_flight
    with pytest.raises(StorageError, match=rf"{label} put of key 'k' timed out after 0\.2s"):
        await queued
    wire.hold.set()
    assert await kv.get("k") == VersionedValue(b"v", 1)


async def test_close_with_pending_operations_does_not_hang(storages: Storages) -> None:
    wire = storages.wire
    kv = storages.open(operation_timeout=0.5, max_pool_size=2)
    await kv.put("k", b"v")
    wire.sends.clear()
    wire.hold = asyncio.Event()  # never set: what is in flight never gets an answer
    first = asyncio.ensure_future(kv.get("k"))  # alone
    await wire.wait_sends(1)
    in_flight = [asyncio.ensure_future(kv.get("k")) for _ in range(4)]
    await wire.wait_sends(2)
    queued = [asyncio.ensure_future(kv.put("k", b"w")) for _ in range(5)]
    await asyncio.sleep(0)
    await kv.close()
    results = await asyncio.gather(first, *in_flight, *queued, return_exceptions=True)
    assert all(isinstance(r, StorageError) for r in results)
    # in flight: timed out (or, at the same instant, cut by close); queued: failed by close
    assert all("timed out" in str(r) or "closed" in str(r) for r in results[:5])
    assert all("was not done: the storage was closed" in str(r) for r in results[5:])
    assert wire.sends == [1, 1]  # the four gets of one key are one read
    with pytest.raises(StorageError, match="closed"):
        await kv.get("k")
    await kv.close()


async def test_many_concurrent_engines_need_few_connections(storages: Storages) -> None:
    workers = [storages.open(), storages.open()]
    stop = asyncio.Event()

    async def engine(kv: KeyValueStorage, key: str) -> int:
        rounds = 0
        while not stop.is_set() or rounds < 5:
            current = await kv.get(key)
            await kv.put(key, b"state", expected_version=current.version if current else 0)
            rounds += 1
        return rounds

    engines = [
        asyncio.ensure_future(engine(kv, f"w{w}-{i}"))
        for w, kv in enumerate(workers)
        for i in range(100)
    ]
    await asyncio.sleep(0.1)
    stop.set()
    assert all(r >= 5 for r in await asyncio.gather(*engines))
    for kv in workers:
        assert 1 <= await storages.connections(kv) <= 8


@pytest.mark.parametrize(
    "storages", [pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True
)
async def test_a_mysql_batch_lost_to_a_deadlock_sends_its_writes_again_one_by_one(
    storages: Storages,
) -> None:
    wire = storages.wire
    kv = storages.open()
    for key in "abcde":
        await kv.put(key, b"0")
    table = f"`{storages.name}`.`key_value`"
    waiting = "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'"
    async with storages.mysql_session() as other, other.cursor() as cur:
        # another transaction, heavier than the batch's (so InnoDB rolls the batch back), holds
        # "b" ...
        await cur.execute("START TRANSACTION")
        for key in "cdeb":
            await cur.execute(f"UPDATE {table} SET v = X'01' WHERE k = X'{key.encode().hex()}'")
        wire.sends.clear()
        batch = asyncio.gather(
            kv.get("z"),  # alone; the two writes share one transaction
            kv.put("a", b"A", expected_version=1),
            kv.put("b", b"B", expected_version=1),
        )
        # ... while the batch, holding "a", waits for "b" (InnoDB refreshes what INNODB_TRX
        # shows only when nobody read it for 0.1 s) ...
        while not (await storages.admin_mysql(waiting))[0][0]:  # noqa: ASYNC110 - server state
            await asyncio.sleep(0.2)
        # ... then waits for "a": a deadlock
        await cur.execute(f"UPDATE {table} SET v = X'02' WHERE k = X'{b'a'.hex()}'")
        await cur.execute("COMMIT")
    assert await batch == [None, 2, 2]
    assert wire.sends == [1, 2, 2]  # rolled back, then sent again, one statement each
    assert await kv.get_many(["a", "b", "c"]) == {
        "a": VersionedValue(b"A", 2),
        "b": VersionedValue(b"B", 2),
        "c": VersionedValue(b"\x01", 1),
    }
