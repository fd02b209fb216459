"""The LRU cache: eviction by size, expiry on a fake clock, statistics."""

from __future__ import annotations

import pytest

import infinitic.cache
from infinitic.cache import LRUCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_public_names_are_pinned() -> None:
    assert infinitic.cache.__all__ == [
        "CacheStats",
        "CachedKeySetStorage",
        "CachedKeyValueStorage",
        "CachedStorage",
        "KeySetCacheEntry",
        "LRUCache",
    ]
    for name in infinitic.cache.__all__:
        assert getattr(infinitic.cache, name) is not None


def test_evicts_the_least_recently_used_beyond_max_size() -> None:
    cache: LRUCache[str, int] = LRUCache(3)
    for i, key in enumerate("abc"):
        cache.put(key, i)
    assert cache.get("a") == 0  # "a" is now the most recently used
    cache.put("d", 3)
    assert "b" not in cache
    assert [k for k in "abcd" if k in cache] == ["a", "c", "d"]
    cache.put("c", 30)  # rewriting refreshes too
    cache.put("e", 4)
    assert [k for k in "acde" if k in cache] == ["c", "d", "e"]
    assert len(cache) == 3
    assert cache.stats.evictions == 2


def test_peek_does_not_refresh() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.peek("a") == 1
    cache.put("c", 3)
    assert "a" not in cache


def test_weighted_size() -> None:
    cache: LRUCache[str, bytes] = LRUCache(10, weigh=len)
    cache.put("a", b"12345")
    cache.put("b", b"1234")
    assert cache.weight == 9
    cache.put("c", b"12")
    assert "a" not in cache
    assert cache.weight == 6
    cache.put("huge", b"x" * 11)  # heavier than the whole cache: not kept, nothing evicted
    assert "huge" not in cache
    assert cache.weight == 6


def test_expiry_with_a_fake_clock() -> None:
    clock = FakeClock()
    cache: LRUCache[str, int] = LRUCache(10, ttl=5.0, clock=clock)
    cache.put("a", 1)
    clock.now += 3
    cache.put("b", 2)
    assert cache.get("a") == 1  # reading does not extend its life
    clock.now += 2
    assert cache.get("a") is None
    assert cache.get("b") == 2
    assert cache.stats.expirations == 1
    clock.now += 3
    assert cache.get("b", "gone") == "gone"
    cache.put("c", 3)
    clock.now += 10
    assert cache.purge_expired() == 1
    assert len(cache) == 0
    assert cache.weight == 0


def test_pop_clear_and_stats() -> None:
    cache: LRUCache[str, int] = LRUCache(10)
    cache.put("a", 1)
    assert cache.get("a") == 1
    assert cache.get("z") is None
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)
    assert cache.pop("a") == 1
    assert cache.pop("a") is None
    cache.put("b", 2)
    cache.clear()
    assert len(cache) == 0
    assert cache.weight == 0


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="max_size"):
        LRUCache(0)
    with pytest.raises(ValueError, match="ttl"):
        LRUCache(1, ttl=0)
