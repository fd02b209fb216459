"""A key-set storage answering page and count reads from an LRU cache.

What is safe with several workers: adds and removes always go to the storage, and drop this
worker's cached pages and count of that set. Members added or removed by *other* workers are
seen only once the cached entry expires (``ttl``) or is evicted; so give a ``ttl`` matching the
staleness you accept, or do not cache key sets that several workers change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from infinitic.cache._cached_key_value import CachedKeyValueStorage, FillGuard
from infinitic.cache._lru import LRUCache
from infinitic.storage import KeySetPage, KeySetStorage, Storage

# Pages cached per set, so paging through a huge set does not keep all of it in memory.
_MAX_PAGES_PER_SET = 16


@dataclass(slots=True)
class KeySetCacheEntry:
    """What is cached about one set: the pages read so far and its count."""

    pages: dict[tuple[str | None, int], KeySetPage] = field(default_factory=dict)
    count: int | None = None


class CachedKeySetStorage(KeySetStorage):
    """A key-set storage with an LRU cache of pages and counts in front of another one.

    Example:
        >>> from infinitic.storage import InMemoryKeySetStorage
        >>> ks = CachedKeySetStorage(InMemoryKeySetStorage(), max_size=1_000, ttl=5)

    Args:
        storage: the storage of record (closed with this one).
        max_size: how many sets the cache keeps (ignored when ``cache`` is given).
        ttl: seconds a cached set stays valid, or None (ignored when ``cache`` is given).
        clock: the cache's clock (ignored when ``cache`` is given).
        cache: a cache to use instead of a new one.
    """

    def __init__(
        self,
        storage: KeySetStorage,
        *,
        max_size: int = 10_000,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache: LRUCache[str, KeySetCacheEntry] | None = None,
    ) -> None:
        self.storage = storage
        self.cache: LRUCache[str, KeySetCacheEntry] = (
            cache if cache is not None else LRUCache(max_size, ttl=ttl, clock=clock)
        )
        self._guard = FillGuard()

    async def add(self, key: str, member: str) -> None:
        try:
            await self.storage.add(key, member)
        finally:
            self.invalidate(key)

    async def remove(self, key: str, member: str) -> None:
        try:
            await self.storage.remove(key, member)
        finally:
            self.invalidate(key)

    async def page(self, key: str, *, after: str | None = None, limit: int = 1000) -> KeySetPage:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        entry = self.cache.get(key)
        if entry is not None and (after, limit) in entry.pages:
            return entry.pages[(after, limit)]
        token = self._guard.start(key)
        try:
            page = await self.storage.page(key, after=after, limit=limit)
        finally:
            fresh = self._guard.end(key, token)
        if fresh:
            pages = self._entry(key).pages
            if len(pages) >= _MAX_PAGES_PER_SET:
                del pages[next(iter(pages))]
            pages[(after, limit)] = page
        return page

    async def count(self, key: str) -> int:
        entry = self.cache.get(key)
        if entry is not None and entry.count is not None:
            return entry.count
        token = self._guard.start(key)
        try:
            n = await self.storage.count(key)
        finally:
            fresh = self._guard.end(key, token)
        if fresh:
            self._entry(key).count = n
        return n

    def invalidate(self, key: str) -> None:
        """Drop what is cached about the set ``key``."""
        self.cache.pop(key)
        self._guard.touch(key)

    def clear(self) -> None:
        """Drop every cached set."""
        self.cache.clear()

    async def close(self) -> None:
        """Close the storage and drop the cache; idempotent if the storage's close is."""
        self.cache.clear()
        await self.storage.close()

    def _entry(self, key: str) -> KeySetCacheEntry:
        entry = self.cache.peek(key)
        if entry is None:
            entry = KeySetCacheEntry()
            self.cache.put(key, entry)
        return entry


class CachedStorage(Storage):
    """A storage whose key-value and key-set parts are both cached.

    Example:
        >>> from infinitic.storage import InMemoryStorage
        >>> storage = CachedStorage(InMemoryStorage(), max_size=10_000, ttl=60)

    Args:
        storage: the storage of record (closed with this one).
        max_size: entries kept by each of the two caches.
        ttl: seconds a cached entry stays valid, or None.
        clock: the caches' clock.
    """

    key_value: CachedKeyValueStorage
    key_set: CachedKeySetStorage

    def __init__(
        self,
        storage: Storage,
        *,
        max_size: int = 10_000,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        super().__init__(
            CachedKeyValueStorage(storage.key_value, max_size=max_size, ttl=ttl, clock=clock),
            CachedKeySetStorage(storage.key_set, max_size=max_size, ttl=ttl, clock=clock),
        )

    async def close(self) -> None:
        """Close both parts and the wrapped storage; idempotent."""
        await super().close()
        await self.storage.close()
