"""A key-value storage answering reads from an LRU cache, writing through to the storage.

What is safe with several workers sharing one storage, each with its own cache:

- Every write goes to the storage, so compare-and-set is always decided by the storage: a put
  whose ``expected_version`` is stale is rejected with VersionConflictError even if this cache
  holds that stale version, and the rejection drops the cached entry, so the next get reads the
  storage again.
- A cached entry keeps its version. A get may return a value another worker has replaced since
  (until the entry expires, or this worker writes or invalidates the key); a compare-and-set
  based on it fails as above, so a read-modify-compare-and-set loop is never wrong, only
  retried. This is what Infinitic's engines do (one writer per key, compare-and-set).
- Not protected: unconditional writes (``expected_version=None``, ``put_many``) based on a stale
  read. If several workers write a key unconditionally, give the cache a short ``ttl`` or none.
- Within one process, a read that raced with a write never puts an older value back in the
  cache, and a write whose outcome is unknown (an error, a cancellation) drops the entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from infinitic.cache._lru import LRUCache
from infinitic.storage import KeyValueStorage, VersionedValue


class FillGuard:
    """Tells whether a value read from storage may still be cached when the read ends.

    A read may end after a write of the same key that started later, so its result is older
    than what the write cached. Each write or invalidation of a key in flight is counted, and a
    read only fills the cache if no write to its key completed while it was running.
    """

    def __init__(self) -> None:
        self._reads: dict[str, list[int]] = {}  # key -> [reads in flight, writes seen]

    def start(self, key: str) -> int:
        """Register a read of ``key``; return the token to give to :meth:`end`."""
        slot = self._reads.setdefault(key, [0, 0])
        slot[0] += 1
        return slot[1]

    def end(self, key: str, token: int) -> bool:
        """Unregister a read; return whether its result may be cached."""
        slot = self._reads[key]
        slot[0] -= 1
        if slot[0] == 0:
            del self._reads[key]
        return slot[1] == token

    def touch(self, key: str) -> None:
        """Record that ``key`` was written or invalidated."""
        slot = self._reads.get(key)
        if slot is not None:
            slot[1] += 1


class CachedKeyValueStorage(KeyValueStorage):
    """A key-value storage with an LRU cache of versioned values in front of another one.

    Reads are served from the cache when possible; writes go through to the storage and update
    the cache with the new version on success, or drop the entry on any failure. See the module
    documentation for what is safe with several workers.

    Example:
        >>> from infinitic.storage import InMemoryKeyValueStorage
        >>> kv = CachedKeyValueStorage(InMemoryKeyValueStorage(), max_size=10_000, ttl=60)

    Args:
        storage: the storage of record (closed with this one).
        max_size: how many entries the cache keeps (ignored when ``cache`` is given).
        ttl: seconds a cached entry stays valid, or None (ignored when ``cache`` is given).
        clock: the cache's clock (ignored when ``cache`` is given).
        cache: a cache to use instead of a new one, for instance one bounded by bytes.
    """

    def __init__(
        self,
        storage: KeyValueStorage,
        *,
        max_size: int = 10_000,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache: LRUCache[str, VersionedValue] | None = None,
    ) -> None:
        self.storage = storage
        self.cache: LRUCache[str, VersionedValue] = (
            cache if cache is not None else LRUCache(max_size, ttl=ttl, clock=clock)
        )
        self._guard = FillGuard()

    async def get(self, key: str) -> VersionedValue | None:
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        token = self._guard.start(key)
        try:
            found = await self.storage.get(key)
        finally:
            fresh = self._guard.end(key, token)
        if found is not None and fresh:
            self.cache.put(key, found)
        return found

    async def get_many(self, keys: Sequence[str]) -> dict[str, VersionedValue]:
        out: dict[str, VersionedValue] = {}
        missing: list[str] = []
        for key in dict.fromkeys(keys):
            cached = self.cache.get(key)
            if cached is None:
                missing.append(key)
            else:
                out[key] = cached
        if not missing:
            return out
        tokens = [self._guard.start(key) for key in missing]
        try:
            found = await self.storage.get_many(missing)
        finally:
            fresh = [self._guard.end(key, t) for key, t in zip(missing, tokens, strict=True)]
        for key, ok in zip(missing, fresh, strict=True):
            value = found.get(key)
            if value is not None:
                out[key] = value
                if ok:
                    self.cache.put(key, value)
        return out

    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        value = bytes(value)
        try:
            version = await self.storage.put(key, value, expected_version=expected_version)
        except BaseException:
            # A conflict means our entry (if any) is stale; any other failure leaves the outcome
            # unknown. Either way the storage must be read again.
            self.invalidate(key)
            raise
        self._guard.touch(key)
        current = self.cache.peek(key)
        if current is not None and current.version > version:
            self.cache.pop(key)  # an older write finishing late; keep nothing rather than guess
        else:
            self.cache.put(key, VersionedValue(value, version))
        return version

    async def put_many(self, items: Mapping[str, bytes]) -> None:
        try:
            await self.storage.put_many(items)
        finally:
            # The storage does not report the new versions: read them again when needed.
            for key in items:
                self.invalidate(key)

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        try:
            await self.storage.delete(key, expected_version=expected_version)
        finally:
            self.invalidate(key)

    def invalidate(self, key: str) -> None:
        """Drop ``key`` from the cache, so the next read goes to the storage."""
        self.cache.pop(key)
        self._guard.touch(key)

    def clear(self) -> None:
        """Drop every cached entry."""
        self.cache.clear()

    async def close(self) -> None:
        """Close the storage and drop the cache; idempotent if the storage's close is."""
        self.cache.clear()
        await self.storage.close()
