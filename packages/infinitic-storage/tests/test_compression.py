"""Compressed key-value storage: round trips, changing the setting, corrupted values."""

from __future__ import annotations

import gzip
import importlib
import os
import sys

import pytest

from infinitic.exceptions import CorruptedValueError, VersionConflictError
from infinitic.storage import CompressedKeyValueStorage, InMemoryKeyValueStorage, VersionedValue
from infinitic.storage._compression import GZIP_MAGIC, ZSTD_MAGIC, compress, decompress

STATE = b'{"workflow": "BankWorkflow", "history": [' + b'{"task": "withdraw"},' * 500 + b"]}"


@pytest.mark.parametrize(("compression", "magic"), [("zstd", ZSTD_MAGIC), ("gzip", GZIP_MAGIC)])
async def test_round_trip_stores_compressed_bytes(compression: str, magic: bytes) -> None:
    inner = InMemoryKeyValueStorage()
    kv = CompressedKeyValueStorage(inner, compression)  # type: ignore[arg-type]
    assert await kv.put("wf:1", STATE, expected_version=0) == 1
    stored = await inner.get("wf:1")
    assert stored is not None
    assert stored.value.startswith(magic)
    assert len(stored.value) < len(STATE) // 10
    assert await kv.get("wf:1") == VersionedValue(STATE, 1)
    assert await kv.get_many(["wf:1", "nope"]) == {"wf:1": VersionedValue(STATE, 1)}
    with pytest.raises(VersionConflictError):
        await kv.put("wf:1", STATE, expected_version=0)
    assert await kv.put("wf:1", b"x" * 1000, expected_version=1) == 2


async def test_incompressible_and_small_values_are_stored_raw() -> None:
    inner = InMemoryKeyValueStorage()
    kv = CompressedKeyValueStorage(inner, "zstd")
    noise, small = os.urandom(4096), b"a" * 40
    await kv.put_many({"noise": noise, "small": small})
    assert (await inner.get("noise")) == VersionedValue(noise, 1)
    assert (await inner.get("small")) == VersionedValue(small, 1)
    assert (await kv.get("noise")) == VersionedValue(noise, 1)


async def test_changing_the_setting_keeps_old_values_readable() -> None:
    inner = InMemoryKeyValueStorage()
    await inner.put("raw", STATE)
    await CompressedKeyValueStorage(inner, "zstd").put("zstd", STATE)
    await CompressedKeyValueStorage(inner, "gzip").put("gzip", STATE)
    await CompressedKeyValueStorage(inner, None).put("none", STATE)
    assert (await inner.get("none")) == VersionedValue(STATE, 1)
    for compression in ("zstd", "gzip", None):
        kv = CompressedKeyValueStorage(inner, compression)  # type: ignore[arg-type]
        got = await kv.get_many(["raw", "zstd", "gzip", "none"])
        assert {k: v.value for k, v in got.items()} == dict.fromkeys(got, STATE)
        assert len(got) == 4


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
@pytest.mark.parametrize("damage", ["truncate", "flip", "magic-only"])
async def test_corrupted_value_names_the_key(compression: str, damage: str) -> None:
    inner = InMemoryKeyValueStorage()
    kv = CompressedKeyValueStorage(inner, compression)  # type: ignore[arg-type]
    await kv.put("workflow:7", STATE)
    stored = await inner.get("workflow:7")
    assert stored is not None
    data = stored.value
    if damage == "truncate":
        broken = data[: len(data) // 2]
    elif damage == "flip":
        middle = len(data) // 2
        broken = data[:middle] + bytes([data[middle] ^ 0x5A]) + data[middle + 1 :]
    else:
        broken = data[:4]
    await inner.put("workflow:7", broken)
    with pytest.raises(CorruptedValueError) as info:
        await kv.get("workflow:7")
    assert info.value.key == "workflow:7"
    assert "workflow:7" in str(info.value)
    with pytest.raises(CorruptedValueError):
        await kv.get_many(["workflow:7"])


def test_values_starting_with_a_magic_are_escaped() -> None:
    for value in (ZSTD_MAGIC + b"x", GZIP_MAGIC + b"y", GZIP_MAGIC):
        for compression in ("zstd", "gzip", None):
            stored = compress(value, compression)  # type: ignore[arg-type]
            assert stored != value
            assert decompress("k", stored) == value
    assert decompress("k", gzip.compress(b"")) == b""


async def test_large_values_are_compressed_off_the_event_loop() -> None:
    kv = CompressedKeyValueStorage(InMemoryKeyValueStorage(), "zstd", level=1)
    big = STATE * 100
    await kv.put("big", big)
    assert (await kv.get("big")) == VersionedValue(big, 1)


def test_unknown_compression_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown compression"):
        CompressedKeyValueStorage(InMemoryKeyValueStorage(), "lz4")  # type: ignore[arg-type]


def test_missing_zstandard_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(ImportError, match=r'pip install "infinitic-storage\[zstd\]"'):
        CompressedKeyValueStorage(InMemoryKeyValueStorage(), "zstd")
    # gzip needs nothing
    CompressedKeyValueStorage(InMemoryKeyValueStorage(), "gzip")


@pytest.mark.parametrize(
    ("module", "driver", "extra"),
    [
        ("_redis", "redis", "redis"),
        ("_postgres", "asyncpg", "postgres"),
        ("_mysql", "aiomysql", "mysql"),
    ],
)
def test_missing_driver_gives_an_install_hint(
    monkeypatch: pytest.MonkeyPatch, module: str, driver: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, driver, None)
    monkeypatch.delitem(sys.modules, f"infinitic.storage.{module}", raising=False)
    with pytest.raises(ImportError, match=rf'pip install "infinitic-storage\[{extra}\]"'):
        importlib.import_module(f"infinitic.storage.{module}")
