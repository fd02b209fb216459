"""In-memory storage: one process, no persistence; the twin used by tests and the demo."""

from __future__ import annotations

import bisect

from infinitic.exceptions import VersionConflictError
from infinitic.storage._interfaces import (
    KeySetPage,
    KeySetStorage,
    KeyValueStorage,
    Storage,
    VersionedValue,
)


class InMemoryKeyValueStorage(KeyValueStorage):
    """A dict of versioned values. Operations never await, so each one is atomic."""

    def __init__(self) -> None:
        self._data: dict[str, VersionedValue] = {}

    async def get(self, key: str) -> VersionedValue | None:
        return self._data.get(key)

    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        current = self._data.get(key)
        actual = current.version if current is not None else 0
        if expected_version is not None and expected_version != actual:
            raise VersionConflictError(key, expected_version, actual)
        self._data[key] = VersionedValue(bytes(value), actual + 1)
        return actual + 1

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        current = self._data.get(key)
        actual = current.version if current is not None else 0
        if expected_version is not None and expected_version != actual:
            raise VersionConflictError(key, expected_version, actual)
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)

    def keys(self, prefix: str = "") -> list[str]:
        """The keys held that start with ``prefix``, oldest first (for tests and inspection)."""
        return [k for k in self._data if k.startswith(prefix)]


class InMemoryKeySetStorage(KeySetStorage):
    """Sorted lists of members, so paging is a binary search."""

    def __init__(self) -> None:
        self._sets: dict[str, list[str]] = {}

    async def add(self, key: str, member: str) -> None:
        members = self._sets.setdefault(key, [])
        i = bisect.bisect_left(members, member)
        if i == len(members) or members[i] != member:
            members.insert(i, member)

    async def remove(self, key: str, member: str) -> None:
        members = self._sets.get(key)
        if not members:
            return
        i = bisect.bisect_left(members, member)
        if i < len(members) and members[i] == member:
            del members[i]
        if not members:
            del self._sets[key]

    async def page(self, key: str, *, after: str | None = None, limit: int = 1000) -> KeySetPage:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        members = self._sets.get(key, [])
        start = 0 if after is None else bisect.bisect_right(members, after)
        chunk = members[start : start + limit]
        more = start + limit < len(members)
        return KeySetPage(chunk, chunk[-1] if more and chunk else None)

    async def count(self, key: str) -> int:
        return len(self._sets.get(key, []))


class InMemoryStorage(Storage):
    """Key-value and key-set storage in this process's memory (lost when it exits)."""

    key_value: InMemoryKeyValueStorage
    key_set: InMemoryKeySetStorage

    def __init__(self) -> None:
        super().__init__(InMemoryKeyValueStorage(), InMemoryKeySetStorage())
