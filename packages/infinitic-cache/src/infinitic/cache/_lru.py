"""A least-recently-used cache with a size bound and an optional expiry, on an injectable clock."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar, overload

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    expires_at: float | None
    weight: int


@dataclass(slots=True)
class CacheStats:
    """Counters of a cache since it was created."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0


class LRUCache(Generic[K, V]):
    """A mapping that forgets its least recently used entries beyond a maximum size.

    Each entry weighs 1 by default, so ``max_size`` is a number of entries; give ``weigh`` to
    bound something else (for instance the total bytes of the values). An entry heavier than
    ``max_size`` is not kept at all. With ``ttl``, an entry expires that many seconds after it
    was written (reading it does not extend its life). Nothing here awaits, so in asyncio code
    each method is atomic.

    Example:
        >>> cache: LRUCache[str, int] = LRUCache(2)
        >>> cache.put("a", 1); cache.put("b", 2); cache.get("a")
        1
        >>> cache.put("c", 3)  # evicts "b", the least recently used
        >>> "b" in cache
        False

    Args:
        max_size: the total weight kept (entries, by default); at least 1.
        ttl: seconds an entry stays valid after it was written, or None to keep it until
            evicted.
        clock: returns the current time in seconds (``time.monotonic`` by default); inject a
            fake one in tests.
        weigh: returns the weight of a value (1 for every value by default).
    """

    def __init__(
        self,
        max_size: int,
        *,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        weigh: Callable[[V], int] | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be positive or None, got {ttl}")
        self.max_size = max_size
        self.ttl = ttl
        self.stats = CacheStats()
        self._clock = clock
        self._weigh = weigh
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._weight = 0

    @overload
    def get(self, key: K) -> V | None: ...

    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: object = None) -> object:
        """Return the value of ``key`` and mark it as recently used, or ``default``."""
        entry = self._live(key)
        if entry is None:
            self.stats.misses += 1
            return default
        self.stats.hits += 1
        self._entries.move_to_end(key)
        return entry.value

    def peek(self, key: K) -> V | None:
        """Return the value of ``key`` without marking it as used or counting a hit."""
        entry = self._live(key)
        return None if entry is None else entry.value

    def put(self, key: K, value: V) -> None:
        """Store ``value`` under ``key`` as the most recently used entry; evict beyond the size."""
        weight = 1 if self._weigh is None else self._weigh(value)
        self.pop(key)
        if weight > self.max_size:
            return
        expires_at = None if self.ttl is None else self._clock() + self.ttl
        self._entries[key] = _Entry(value, expires_at, weight)
        self._weight += weight
        while self._weight > self.max_size:
            _, evicted = self._entries.popitem(last=False)
            self._weight -= evicted.weight
            self.stats.evictions += 1

    def pop(self, key: K) -> V | None:
        """Remove ``key`` and return its value (None if absent or expired)."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._weight -= entry.weight
        if entry.expires_at is not None and entry.expires_at <= self._clock():
            return None
        return entry.value

    def clear(self) -> None:
        """Remove every entry."""
        self._entries.clear()
        self._weight = 0

    def purge_expired(self) -> int:
        """Remove the expired entries now (they are otherwise dropped when met); return how many."""
        if self.ttl is None:
            return 0
        now = self._clock()
        expired = [
            k for k, e in self._entries.items() if e.expires_at is not None and e.expires_at <= now
        ]
        for key in expired:
            self._weight -= self._entries.pop(key).weight
        self.stats.expirations += len(expired)
        return len(expired)

    @property
    def weight(self) -> int:
        """The total weight of the entries held (expired ones included until dropped)."""
        return self._weight

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return self._live(key) is not None  # type: ignore[arg-type]

    def _live(self, key: K) -> _Entry[V] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at is not None and entry.expires_at <= self._clock():
            del self._entries[key]
            self._weight -= entry.weight
            self.stats.expirations += 1
            return None
        return entry
