"""Redis auto-pipelining: concurrent key-value operations share round trips, keep their own
results and errors, and survive script flushes, killed connections, cancellations and close.

Round trips are counted (and held or cut) at the connections' ``send_packed_command``, for the
connections named after the test's storage only; no assertion depends on timing. Every test runs
twice: replies parsed by hiredis, and read with redis-py's ``read_response`` (without hiredis).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import pytest

from infinitic.exceptions import StorageError, VersionConflictError
from infinitic.storage import RedisKeyValueStorage, VersionedValue, _redis_pipeline

from .conftest import REDIS_URL, drop_redis_keys, require, unique

if TYPE_CHECKING:
    import redis.asyncio as aioredis

pytestmark = pytest.mark.redis


@pytest.fixture(autouse=True, params=["hiredis", "read_response"])
def reply_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How replies are read: hiredis on the connection's stream, or redis-py's own reads."""
    if request.param == "read_response":
        monkeypatch.setattr(_redis_pipeline, "hiredis", None)
    else:
        assert _redis_pipeline.hiredis is not None
    return str(request.param)


def test_commands_are_packed_as_redis_reads_them() -> None:
    packed = _redis_pipeline.pack_commands(
        [("HMGET", "k\u00e9", b"v", b"n"), ("SCRIPT LOAD", "return 1"), ("EVALSHA", "ab", 1)]
    )
    assert packed == (
        b"*4\r\n$5\r\nHMGET\r\n$3\r\nk\xc3\xa9\r\n$1\r\nv\r\n$1\r\nn\r\n"
        b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$8\r\nreturn 1\r\n"
        b"*3\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n"
    )


class Wire:
    """The round trips of the connections named ``name`` that carry key-value commands:
    recorded (how many commands each), and held or cut on demand."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sends: list[int] = []  # the key-value commands of each round trip, in order
        self.sent = asyncio.Condition()
        self.hold: asyncio.Event | None = None  # a round trip waits for it before being sent
        self.cut_next_batch = False  # kill the connections before the next batch of several

    async def wait_sends(self, count: int) -> None:
        async with self.sent:
            await self.sent.wait_for(lambda: len(self.sends) >= count)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from redis.asyncio.connection import AbstractConnection

        original = AbstractConnection.send_packed_command
        wire = self

        async def send(conn: Any, command: Any, check_health: bool = True) -> None:
            commands = _key_value_commands(command)
            if conn.client_name == wire.name and commands:
                wire.sends.append(commands)
                async with wire.sent:
                    wire.sent.notify_all()
                if wire.hold is not None:
                    await wire.hold.wait()
                if wire.cut_next_batch and commands > 1:
                    wire.cut_next_batch = False
                    assert await kill_connections(wire.name) > 0
            await original(conn, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", send)


def _key_value_commands(command: bytes | str | Iterable[bytes]) -> int:
    if isinstance(command, str):
        command = command.encode()
    data = command if isinstance(command, bytes) else b"".join(command)
    return data.count(b"$5\r\nHMGET\r\n") + data.count(b"$7\r\nEVALSHA\r\n")


@contextlib.asynccontextmanager
async def admin() -> AsyncIterator[aioredis.Redis]:
    """A client of its own, outside the storage under test."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


async def kill_connections(name: str) -> int:
    """Close the server side of every connection named ``name``; return how many."""
    async with admin() as redis:
        ids = [c["id"] for c in await redis.client_list() if c.get("name") == name]
        for client_id in ids:
            await redis.client_kill_filter(_id=client_id)
        return len(ids)


async def flush_scripts() -> None:
    async with admin() as redis:
        await redis.script_flush()


async def connection_count(name: str) -> int:
    async with admin() as redis:
        return sum(1 for c in await redis.client_list() if c.get("name") == name)


class Storages:
    """Key-value storages on one fresh key prefix, their connections named ``name``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = unique("infinitic-pipelining")
        self.opened: list[RedisKeyValueStorage] = []

    def open(self, **options: Any) -> RedisKeyValueStorage:
        kv = RedisKeyValueStorage.from_url(
            self.url, key_prefix=self.name + ":", client_name=self.name, **options
        )
        self.opened.append(kv)
        return kv


@pytest.fixture
async def storages() -> AsyncIterator[Storages]:
    """Storages closed, and their keys removed, after the test."""
    opened = Storages(require("Redis", REDIS_URL))
    try:
        yield opened
    finally:
        for kv in opened.opened:
            await kv.close()
        await drop_redis_keys(REDIS_URL, opened.name + ":")


@pytest.fixture
def wire(storages: Storages, monkeypatch: pytest.MonkeyPatch) -> Wire:
    w = Wire(storages.name)
    w.install(monkeypatch)
    return w


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
    found = await kv.get_many(["absent", *keys[:3]])
    assert found == {k: VersionedValue(k.encode() + b"!", 2) for k in keys[:3]}


async def test_concurrent_operations_share_round_trips(storages: Storages, wire: Wire) -> None:
    kv = storages.open()
    await kv.put("k", b"v")
    wire.sends.clear()
    found = await asyncio.gather(*(kv.get("k") for _ in range(200)))
    assert found == [VersionedValue(b"v", 1)] * 200
    # the first finds the storage idle and goes at once; the others share the next round trip
    assert wire.sends == [1, 199]
    wire.sends.clear()
    written = await asyncio.gather(
        *(kv.put(f"k{i}", b"v", expected_version=0) for i in range(1200))
    )
    assert written == [1] * 1200
    # at most 512 commands a round trip; the three batches go at once, in any order
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


async def test_without_auto_pipelining_each_operation_is_a_round_trip(
    storages: Storages, wire: Wire
) -> None:
    kv = storages.open(auto_pipelining=False)
    await kv.put("k", b"v")
    wire.sends.clear()
    found = await asyncio.gather(*(kv.get("k") for _ in range(20)))
    assert found == [VersionedValue(b"v", 1)] * 20
    assert wire.sends == [1] * 20


async def test_operations_are_sent_without_waiting_for_a_timer(
    storages: Storages, wire: Wire
) -> None:
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


async def test_a_command_error_fails_only_its_caller(storages: Storages, wire: Wire) -> None:
    kv = storages.open()
    name = storages.name
    async with admin() as redis:
        await redis.set(f"{name}:kv:not-a-hash", "plain string")
    await kv.put("good", b"v")
    wire.sends.clear()
    results = await asyncio.gather(
        kv.get("good"),
        kv.get("not-a-hash"),
        kv.put("other", b"x", expected_version=0),
        kv.put("not-a-hash", b"x"),
        kv.delete("good", expected_version=3),
        return_exceptions=True,
    )
    assert wire.sends == [1, 4]  # the first went alone, the four others together
    good, bad_get, put, bad_put, conflict = results
    assert good == VersionedValue(b"v", 1)
    assert put == 1
    assert isinstance(conflict, VersionConflictError)
    assert (conflict.key, conflict.expected, conflict.actual) == ("good", 3, 1)
    for error, operation in ((bad_get, "get"), (bad_put, "put")):
        assert isinstance(error, StorageError)
        assert not isinstance(error, VersionConflictError)
        assert f"Redis {operation} of key 'not-a-hash' failed" in str(error)
        assert "WRONGTYPE" in str(error)
    assert await kv.get("good") == VersionedValue(b"v", 1)


async def test_a_script_flush_is_transparent(storages: Storages) -> None:
    kv = storages.open()
    for _ in range(2):  # and again, once the scripts were loaded back
        await kv.put("a", b"1", expected_version=0)
        await kv.put("gone", b"1", expected_version=0)
        await flush_scripts()
        read, *writes, first, second, deleted = await asyncio.gather(
            kv.get("a"),  # alone; the scripts below share the next round trip
            *(kv.put(f"k{i}", b"v") for i in range(20)),
            kv.put("a", b"2", expected_version=1),
            kv.put("a", b"3", expected_version=1),
            kv.delete("gone"),
            return_exceptions=True,
        )
        assert read == VersionedValue(b"1", 1)
        assert all(isinstance(v, int) for v in writes)
        assert first == 2  # resent in their order
        assert isinstance(second, VersionConflictError)
        assert (second.expected, second.actual) == (1, 2)
        assert deleted is None
        assert await kv.get("gone") is None
        await flush_scripts()
        assert await kv.put("a", b"4", expected_version=2) == 3  # alone
        await flush_scripts()
        await kv.delete("a", expected_version=3)
        assert await kv.get("a") is None


async def test_a_killed_connection_fails_its_batch_and_the_next_call_succeeds(
    storages: Storages, wire: Wire
) -> None:
    kv = storages.open(retries=0)  # with retries, the driver resends the batch on a new connection
    await kv.put("k", b"v")
    await asyncio.gather(*(kv.get(f"warm{i}") for i in range(50)))
    wire.cut_next_batch = True
    alone, *batch = await asyncio.gather(
        kv.get("k"),  # goes alone, at once
        kv.put("k", b"w", expected_version=1),  # these three share the next round trip
        kv.get("x"),
        kv.delete("k"),
        return_exceptions=True,
    )
    assert wire.cut_next_batch is False
    assert wire.sends[-2:] == [1, 3]
    assert alone == VersionedValue(b"v", 1)
    expected = [("put", "k"), ("get", "x"), ("delete", "k")]
    for result, (operation, key) in zip(batch, expected, strict=True):
        assert isinstance(result, StorageError), result
        assert f"Redis {operation} of key {key!r} failed" in str(result)
        assert "the operation can be retried" in str(result)
    # the connections were killed before the batch was sent: nothing was written
    assert await kv.get("k") == VersionedValue(b"v", 1)
    assert await kv.put("k", b"w", expected_version=1) == 2


async def test_a_killed_connection_is_replaced_when_the_driver_retries(
    storages: Storages, wire: Wire
) -> None:
    kv = storages.open()
    await kv.put("k", b"v")
    wire.cut_next_batch = True
    found = await asyncio.gather(*(kv.get("k") for _ in range(10)))
    assert found == [VersionedValue(b"v", 1)] * 10
    assert wire.cut_next_batch is False


async def test_cancelled_callers_do_not_break_the_flusher(storages: Storages, wire: Wire) -> None:
    kv = storages.open(
        max_connections=2
    )  # two round trips in flight, then operations wait in the queue
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


async def test_the_operation_timeout_bounds_each_wait(storages: Storages, wire: Wire) -> None:
    kv = storages.open(operation_timeout=0.2, max_connections=1)
    await kv.put("k", b"v")
    wire.sends.clear()
    wire.hold = asyncio.Event()  # Redis never answers
    in_flight = asyncio.ensure_future(kv.get("k"))
    await wire.wait_sends(1)
    queued = asyncio.ensure_future(kv.put("k", b"w"))
    with pytest.raises(StorageError, match=r"Redis get of key 'k' timed out after 0\.2s"):
        await in_flight
    with pytest.raises(StorageError, match=r"Redis put of key 'k' timed out after 0\.2s"):
        await queued
    wire.hold.set()
    assert await kv.get("k") == VersionedValue(b"v", 1)


async def test_close_with_pending_operations_does_not_hang(storages: Storages, wire: Wire) -> None:
    kv = storages.open(operation_timeout=0.5, max_connections=2)
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
    assert wire.sends == [1, 4]
    with pytest.raises(StorageError, match="closed"):
        await kv.get("k")
    await kv.close()


async def test_many_concurrent_engines_need_few_connections(storages: Storages) -> None:
    # Two workers at 50 concurrency once exhausted a pool of 50; now one batch per round trip
    # serves them all, on at most 4 connections per storage.
    workers = [storages.open(), storages.open()]
    stop = asyncio.Event()

    async def engine(kv: RedisKeyValueStorage, key: str) -> int:
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
    assert 1 <= await connection_count(storages.name) <= 8
