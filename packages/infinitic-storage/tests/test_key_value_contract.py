"""The key-value storage contract, run against every implementation (see the ``kv`` fixture)."""

from __future__ import annotations

import asyncio
import os

import pytest

from infinitic.exceptions import VersionConflictError
from infinitic.storage import KeyValueStorage, VersionedValue

MIB = 1024 * 1024


async def test_get_absent_returns_none(kv: KeyValueStorage) -> None:
    assert await kv.get("absent") is None


async def test_put_then_get_counts_versions(kv: KeyValueStorage) -> None:
    assert await kv.put("k", b"one") == 1
    assert await kv.get("k") == VersionedValue(b"one", 1)
    assert await kv.put("k", b"two") == 2
    got = await kv.get("k")
    assert got == VersionedValue(b"two", 2)
    assert got is not None
    assert type(got.value) is bytes


async def test_put_expecting_absent(kv: KeyValueStorage) -> None:
    assert await kv.put("k", b"first", expected_version=0) == 1
    with pytest.raises(VersionConflictError) as info:
        await kv.put("k", b"second", expected_version=0)
    assert (info.value.key, info.value.expected, info.value.actual) == ("k", 0, 1)
    assert await kv.get("k") == VersionedValue(b"first", 1)


async def test_put_with_stale_version_is_rejected(kv: KeyValueStorage) -> None:
    await kv.put("k", b"v1")
    await kv.put("k", b"v2")
    with pytest.raises(VersionConflictError) as info:
        await kv.put("k", b"stale", expected_version=1)
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert await kv.put("k", b"v3", expected_version=2) == 3
    assert await kv.get("k") == VersionedValue(b"v3", 3)


async def test_put_expecting_a_version_on_absent_key(kv: KeyValueStorage) -> None:
    with pytest.raises(VersionConflictError) as info:
        await kv.put("nothing", b"x", expected_version=4)
    assert (info.value.key, info.value.expected, info.value.actual) == ("nothing", 4, 0)
    assert await kv.get("nothing") is None


async def test_delete(kv: KeyValueStorage) -> None:
    await kv.delete("absent")
    await kv.delete("absent", expected_version=0)
    await kv.put("k", b"v")
    await kv.delete("k")
    assert await kv.get("k") is None
    assert await kv.put("k", b"again", expected_version=0) == 1


async def test_delete_with_version(kv: KeyValueStorage) -> None:
    await kv.put("k", b"v1")
    await kv.put("k", b"v2")
    with pytest.raises(VersionConflictError) as info:
        await kv.delete("k", expected_version=1)
    assert (info.value.expected, info.value.actual) == (1, 2)
    with pytest.raises(VersionConflictError):
        await kv.delete("k", expected_version=0)
    assert await kv.get("k") == VersionedValue(b"v2", 2)
    await kv.delete("k", expected_version=2)
    assert await kv.get("k") is None
    with pytest.raises(VersionConflictError) as info:
        await kv.delete("k", expected_version=2)
    assert info.value.actual == 0


async def test_get_many_and_put_many(kv: KeyValueStorage) -> None:
    assert await kv.get_many([]) == {}
    await kv.put_many({})
    await kv.put("a", b"old")
    await kv.put_many({"a": b"A", "b": b"B", "c": b""})
    got = await kv.get_many(["a", "b", "c", "missing", "a"])
    assert got == {
        "a": VersionedValue(b"A", 2),
        "b": VersionedValue(b"B", 1),
        "c": VersionedValue(b"", 1),
    }


async def test_put_many_large_batch(kv: KeyValueStorage) -> None:
    items = {f"key-{i:04}": f"value-{i}".encode() for i in range(1200)}
    await kv.put_many(items)
    got = await kv.get_many(list(items))
    assert {k: v.value for k, v in got.items()} == items
    assert {v.version for v in got.values()} == {1}


async def test_concurrent_compare_and_set_loses_no_update(kv: KeyValueStorage) -> None:
    writers, increments = 50, 4
    await kv.put("counter", b"0", expected_version=0)

    async def writer() -> int:
        conflicts = 0
        for _ in range(increments):
            while True:
                current = await kv.get("counter")
                assert current is not None
                value = int(current.value) + 1
                await asyncio.sleep(0)  # let the other writers interleave, even in memory
                try:
                    await kv.put("counter", str(value).encode(), expected_version=current.version)
                    break
                except VersionConflictError:
                    conflicts += 1
        return conflicts

    conflicts = await asyncio.gather(*(writer() for _ in range(writers)))
    final = await kv.get("counter")
    assert final == VersionedValue(str(writers * increments).encode(), writers * increments + 1)
    assert sum(conflicts) > 0  # the writers really did race


@pytest.mark.parametrize("size", [0, 1, 1000, 64 * 1024, MIB])
async def test_values_round_trip_byte_exact(kv: KeyValueStorage, size: int) -> None:
    random_value = os.urandom(size)
    repetitive = (b"infinitic \x00\xff " * (size // 16 + 1))[:size]
    await kv.put("random", random_value)
    await kv.put("repetitive", repetitive)
    got = await kv.get_many(["random", "repetitive"])
    assert got["random"].value == random_value
    assert got["repetitive"].value == repetitive


@pytest.mark.parametrize(
    "value",
    [b"\x28\xb5\x2f\xfd not zstd", b"\x1f\x8b not gzip", b"\x28\xb5\x2f\xfd", b"\x1f\x8b"],
)
async def test_values_looking_compressed_round_trip(kv: KeyValueStorage, value: bytes) -> None:
    await kv.put("k", value)
    got = await kv.get("k")
    assert got is not None
    assert got.value == value


async def test_unicode_keys(kv: KeyValueStorage) -> None:
    keys = ["clé", "ключ", "鍵", "emoji 🎉", "a b", "tag:customer/42", "A", "a"]
    for i, key in enumerate(keys):
        assert await kv.put(key, str(i).encode(), expected_version=0) == 1
    got = await kv.get_many(keys)
    assert {k: v.value for k, v in got.items()} == {k: str(i).encode() for i, k in enumerate(keys)}
    await kv.delete("emoji 🎉", expected_version=1)
    assert await kv.get("emoji 🎉") is None
    assert await kv.get("a") == VersionedValue(b"7", 1)


async def test_close_is_idempotent(kv: KeyValueStorage) -> None:
    await kv.put("k", b"v")
    await kv.close()
    await kv.close()
