"""Value compression in front of any key-value storage.

Compressed values are recognized on read by their magic bytes (zstd frames start with
``28 b5 2f fd``, gzip members with ``1f 8b``), so the setting can change at any time without a
migration: values written uncompressed, or with another algorithm, stay readable. A value that
would itself start with one of these magics is always stored compressed, so reading it back can
never be mistaken for a compressed one. Values that do not shrink are stored as they are.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from infinitic.exceptions import CorruptedValueError
from infinitic.storage._backend import missing_driver
from infinitic.storage._interfaces import KeyValueStorage, VersionedValue

Compression = Literal["zstd", "gzip"]
"""A compression algorithm name."""

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"

# Above this size, (de)compression runs in a thread so the event loop keeps turning.
_THREAD_THRESHOLD = 256 * 1024


# zstd contexts are costly to create and not thread-safe: one per thread (and level) is reused.
_contexts = threading.local()


def _zstd_compressor(level: int) -> Any:
    compressors: dict[int, Any] = _contexts.__dict__.setdefault("compressors", {})
    if level not in compressors:
        compressors[level] = _zstandard().ZstdCompressor(level=level, write_checksum=True)
    return compressors[level]


def _zstd_decompressor() -> Any:
    if not hasattr(_contexts, "decompressor"):
        _contexts.decompressor = _zstandard().ZstdDecompressor()
    return _contexts.decompressor


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError as e:
        raise missing_driver("zstd compression", "zstandard", "zstd") from e
    return zstandard


def compress(value: bytes, compression: Compression | None, level: int | None = None) -> bytes:
    """Return ``value`` as it should be stored with ``compression`` (None: uncompressed).

    The result is compressed if that makes it smaller, or if ``value`` itself starts with a
    compression magic (which would otherwise be misread; gzip is used then if ``compression``
    is None, as it needs no extra); else it is ``value`` unchanged.
    """
    needs_escape = value.startswith((ZSTD_MAGIC, GZIP_MAGIC))
    if compression is None and not needs_escape:
        return value
    if compression == "zstd":
        packed: bytes = _zstd_compressor(3 if level is None else level).compress(value)
    elif compression in ("gzip", None):
        packed = gzip.compress(value, compresslevel=6 if level is None else level, mtime=0)
    else:
        raise ValueError(f"unknown compression {compression!r}: use 'zstd', 'gzip' or None")
    return packed if needs_escape or len(packed) < len(value) else value


def decompress(key: str, stored: bytes) -> bytes:
    """Return the original value of a stored value, whatever the algorithm it was written with.

    Raises:
        CorruptedValueError: the value looks compressed but cannot be decompressed.
        ImportError: the value is zstd-compressed and zstandard is not installed.
    """
    if stored.startswith(ZSTD_MAGIC):
        zstd = _zstandard()
        try:
            return bytes(_zstd_decompressor().decompress(stored))
        except zstd.ZstdError as e:
            raise CorruptedValueError(key, f"invalid zstd data: {e}") from e
    if stored.startswith(GZIP_MAGIC):
        try:
            return gzip.decompress(stored)
        except (OSError, EOFError, zlib.error) as e:
            raise CorruptedValueError(key, f"invalid gzip data: {e}") from e
    return stored


class CompressedKeyValueStorage(KeyValueStorage):
    """A key-value storage compressing the values of another one.

    Versions and compare-and-set are the wrapped storage's own. Reads decompress whatever they
    find (zstd, gzip or raw), so changing ``compression`` needs no migration.

    Example:
        >>> from infinitic.storage import InMemoryKeyValueStorage
        >>> kv = CompressedKeyValueStorage(InMemoryKeyValueStorage(), "gzip")

    Args:
        storage: the storage holding the compressed values (closed with this one).
        compression: "zstd" (needs the ``zstd`` extra), "gzip", or None to write values
            uncompressed while still reading compressed ones.
        level: the compression level (zstd: 1-22, default 3; gzip: 1-9, default 6).
        min_size: values shorter than this many bytes are stored uncompressed.
    """

    def __init__(
        self,
        storage: KeyValueStorage,
        compression: Compression | None = "zstd",
        *,
        level: int | None = None,
        min_size: int = 64,
    ) -> None:
        if compression not in ("zstd", "gzip", None):
            raise ValueError(f"unknown compression {compression!r}: use 'zstd', 'gzip' or None")
        if compression == "zstd":
            _zstandard()  # fail now, with the install hint, rather than at the first write
        self.storage = storage
        self.compression: Compression | None = compression
        self.level = level
        self.min_size = min_size

    async def _encode(self, value: bytes) -> bytes:
        value = bytes(value)
        compression = self.compression if len(value) >= self.min_size else None
        if len(value) > _THREAD_THRESHOLD:
            return await asyncio.to_thread(compress, value, compression, self.level)
        return compress(value, compression, self.level)

    async def _decode(self, key: str, stored: VersionedValue) -> VersionedValue:
        if len(stored.value) > _THREAD_THRESHOLD:
            value = await asyncio.to_thread(decompress, key, stored.value)
        else:
            value = decompress(key, stored.value)
        return VersionedValue(value, stored.version)

    async def get(self, key: str) -> VersionedValue | None:
        stored = await self.storage.get(key)
        return None if stored is None else await self._decode(key, stored)

    async def get_many(self, keys: Sequence[str]) -> dict[str, VersionedValue]:
        found = await self.storage.get_many(keys)
        return {key: await self._decode(key, stored) for key, stored in found.items()}

    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        return await self.storage.put(
            key, await self._encode(value), expected_version=expected_version
        )

    async def put_many(self, items: Mapping[str, bytes]) -> None:
        await self.storage.put_many({key: await self._encode(v) for key, v in items.items()})

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        await self.storage.delete(key, expected_version=expected_version)

    async def close(self) -> None:
        """Close the wrapped storage; idempotent if it is."""
        await self.storage.close()
