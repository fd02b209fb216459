"""Cached storages stay correct with several workers sharing one storage."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from infinitic.cache import CachedKeySetStorage, CachedKeyValueStorage, CachedStorage, LRUCache
from infinitic.exceptions import StorageError, VersionConflictError
from infinitic.storage import (
    InMemoryKeySetStorage,
    InMemoryKeyValueStorage,
    InMemoryStorage,
    KeySetPage,
    KeyValueStorage,
    VersionedValue,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingKeyValueStorage(KeyValueStorage):
    """Counts reads; can pause reads on an event, or fail writes."""

    def __init__(self, inner: KeyValueStorage) -> None:
        self.inner = inner
        self.reads = 0
        self.pause: asyncio.Event | None = None
        self.fail_writes = False
        self.closed = 0

    async def get(self, key: str) -> VersionedValue | None:
        self.reads += 1
        value = await self.inner.get(key)
        if self.pause is not None:
            await self.pause.wait()
        return value

    async def get_many(self, keys: Sequence[str]) -> dict[str, VersionedValue]:
        self.reads += 1
        return await self.inner.get_many(keys)

    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        if self.fail_writes:
            await self.inner.put(key, value, expected_version=expected_version)
            raise StorageError(f"reply lost for key {key!r}")
        return await self.inner.put(key, value, expected_version=expected_version)

    async def put_many(self, items: Mapping[str, bytes]) -> None:
        await self.inner.put_many(items)

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        await self.inner.delete(key, expected_version=expected_version)

    async def close(self) -> None:
        self.closed += 1


async def test_reads_are_served_from_the_cache() -> None:
    backend = CountingKeyValueStorage(InMemoryKeyValueStorage())
    kv = CachedKeyValueStorage(backend)
    await kv.put("k", b"v")
    assert await kv.get("k") == VersionedValue(b"v", 1)
    assert backend.reads == 0  # the write filled the cache
    assert await kv.get("absent") is None
    assert await kv.get("absent") is None
    assert backend.reads == 2  # absence is not cached
    await backend.inner.put("other", b"o")
    assert await kv.get_many(["k", "other"]) == {
        "k": VersionedValue(b"v", 1),
        "other": VersionedValue(b"o", 1),
    }
    assert await kv.get("other") == VersionedValue(b"o", 1)
    assert backend.reads == 3


async def test_stale_version_is_rejected_through_the_cache() -> None:
    shared = InMemoryKeyValueStorage()
    worker_a = CachedKeyValueStorage(shared)
    worker_b = CachedKeyValueStorage(shared)
    await worker_a.put("wf", b"state-1", expected_version=0)
    assert await worker_b.get("wf") == VersionedValue(b"state-1", 1)
    assert await worker_b.put("wf", b"state-2", expected_version=1) == 2

    stale = await worker_a.get("wf")
    assert stale == VersionedValue(b"state-1", 1)  # a stale read, which is allowed...
    with pytest.raises(VersionConflictError) as info:
        await worker_a.put("wf", b"lost update", expected_version=stale.version)
    assert info.value.actual == 2  # ...but the write based on it is rejected by the storage
    assert await worker_a.get("wf") == VersionedValue(b"state-2", 2)  # and the entry refreshed
    assert await worker_a.put("wf", b"state-3", expected_version=2) == 3
    assert await shared.get("wf") == VersionedValue(b"state-3", 3)


async def test_concurrent_workers_lose_no_update() -> None:
    shared = InMemoryKeyValueStorage()
    workers = [CachedKeyValueStorage(shared) for _ in range(5)]
    await shared.put("counter", b"0")

    async def increment(kv: CachedKeyValueStorage) -> None:
        for _ in range(20):
            while True:
                current = await kv.get("counter")
                assert current is not None
                await asyncio.sleep(0)
                try:
                    new = str(int(current.value) + 1).encode()
                    await kv.put("counter", new, expected_version=current.version)
                    break
                except VersionConflictError:
                    pass

    await asyncio.gather(*(increment(w) for w in workers for _ in range(4)))
    assert await shared.get("counter") == VersionedValue(b"400", 401)


async def test_a_read_racing_a_write_does_not_cache_the_older_value() -> None:
    backend = CountingKeyValueStorage(InMemoryKeyValueStorage())
    kv = CachedKeyValueStorage(backend)
    await backend.inner.put("k", b"old")
    gate = backend.pause = asyncio.Event()
    read = asyncio.create_task(kv.get("k"))
    await asyncio.sleep(0.01)  # the read has fetched "old" and waits at the gate
    backend.pause = None
    assert await kv.put("k", b"new", expected_version=1) == 2
    gate.set()
    assert await read == VersionedValue(b"old", 1)  # it returns what it read...
    assert kv.cache.peek("k") == VersionedValue(b"new", 2)  # ...without caching it
    assert await kv.get("k") == VersionedValue(b"new", 2)
    assert backend.reads == 1


async def test_failed_writes_and_deletes_drop_the_entry() -> None:
    backend = CountingKeyValueStorage(InMemoryKeyValueStorage())
    kv = CachedKeyValueStorage(backend)
    await kv.put("k", b"v1")
    backend.fail_writes = True
    with pytest.raises(StorageError):
        await kv.put("k", b"v2")  # written, but the reply was lost: the outcome is unknown
    backend.fail_writes = False
    assert "k" not in kv.cache
    assert await kv.get("k") == VersionedValue(b"v2", 2)
    with pytest.raises(VersionConflictError):
        await kv.delete("k", expected_version=1)
    assert "k" not in kv.cache
    await kv.put_many({"k": b"v3"})
    assert "k" not in kv.cache
    assert await kv.get("k") == VersionedValue(b"v3", 3)
    await kv.delete("k")
    assert await kv.get("k") is None


async def test_entries_expire_so_other_workers_writes_are_seen() -> None:
    clock = FakeClock()
    shared = InMemoryKeyValueStorage()
    kv = CachedKeyValueStorage(shared, ttl=10, clock=clock)
    await kv.put("k", b"mine")
    await shared.put("k", b"theirs")
    assert await kv.get("k") == VersionedValue(b"mine", 1)
    clock.now += 10
    assert await kv.get("k") == VersionedValue(b"theirs", 2)


async def test_cache_bounded_by_bytes() -> None:
    cache: LRUCache[str, VersionedValue] = LRUCache(1000, weigh=lambda v: len(v.value))
    kv = CachedKeyValueStorage(InMemoryKeyValueStorage(), cache=cache)
    await kv.put("a", b"x" * 600)
    await kv.put("b", b"y" * 600)
    assert "a" not in cache
    assert "b" in cache


async def test_key_set_cache() -> None:
    clock = FakeClock()
    shared = InMemoryKeySetStorage()
    ks = CachedKeySetStorage(shared, ttl=5, clock=clock)
    await ks.add("tag", "b")
    await ks.add("tag", "a")
    assert await ks.page("tag") == KeySetPage(["a", "b"], None)
    assert await ks.count("tag") == 2
    await shared.add("tag", "c")  # another worker
    assert await ks.count("tag") == 2  # not seen yet...
    clock.now += 5
    assert await ks.count("tag") == 3  # ...until the entry expires
    assert await ks.page("tag", limit=2) == KeySetPage(["a", "b"], "b")
    await ks.remove("tag", "a")  # our own changes are seen at once
    assert await ks.page("tag", limit=2) == KeySetPage(["b", "c"], None)
    assert await ks.count("tag") == 2
    with pytest.raises(ValueError):
        await ks.page("tag", limit=0)


async def test_key_set_cache_keeps_a_bounded_number_of_pages() -> None:
    ks = CachedKeySetStorage(InMemoryKeySetStorage())
    for i in range(100):
        await ks.add("big", f"m{i:03}")
    after = None
    while True:
        page = await ks.page("big", after=after, limit=3)
        if page.next_cursor is None:
            break
        after = page.next_cursor
    entry = ks.cache.peek("big")
    assert entry is not None
    assert len(entry.pages) <= 16


async def test_cached_storage_bundle() -> None:
    inner = InMemoryStorage()
    storage = CachedStorage(inner, max_size=10, ttl=60)
    await storage.key_value.put("k", b"v", expected_version=0)
    await storage.key_set.add("s", "m")
    assert await inner.key_value.get("k") == VersionedValue(b"v", 1)
    assert await storage.key_set.count("s") == 1
    async with storage:
        pass
    await storage.close()
    assert len(storage.key_value.cache) == 0
