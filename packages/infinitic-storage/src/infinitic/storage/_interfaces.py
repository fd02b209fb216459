"""The storage interfaces every backend implements.

Two kinds of storage: a key-value storage with compare-and-set on a version number (workflow
states, tag states), and a key-set storage (tag -> ids) read page by page.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self


@dataclass(frozen=True, slots=True)
class VersionedValue:
    """A stored value and its version (1 for the first write, then +1 at each write)."""

    value: bytes
    version: int


@dataclass(frozen=True, slots=True)
class KeySetPage:
    """A page of the members of a key set, in ascending order.

    ``next_cursor`` is None on the last page; otherwise pass it as ``after`` to get the next one.
    """

    members: list[str]
    next_cursor: str | None


class KeyValueStorage(ABC):
    """Bytes values under string keys, with an atomic compare-and-set on a version number."""

    @abstractmethod
    async def get(self, key: str) -> VersionedValue | None:
        """Return the value of ``key`` with its version, or None if absent."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, VersionedValue]:
        """Return the present keys among ``keys`` with their values."""
        out: dict[str, VersionedValue] = {}
        for key in keys:
            v = await self.get(key)
            if v is not None:
                out[key] = v
        return out

    @abstractmethod
    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        """Write ``value`` under ``key`` and return its new version.

        Args:
            expected_version: None writes unconditionally; 0 requires the key to be absent;
                n > 0 requires the stored version to be n. The check and the write are atomic.

        Raises:
            VersionConflictError: the stored version is not the expected one.
        """

    async def put_many(self, items: Mapping[str, bytes]) -> None:
        """Write several values unconditionally."""
        for key, value in items.items():
            await self.put(key, value)

    @abstractmethod
    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        """Delete ``key``; deleting an absent key without an expected version does nothing.

        Raises:
            VersionConflictError: ``expected_version`` is given and does not match.
        """

    async def close(self) -> None:
        """Release connections; idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class KeySetStorage(ABC):
    """Sets of string members under string keys, read page by page in ascending order."""

    @abstractmethod
    async def add(self, key: str, member: str) -> None:
        """Add ``member`` to the set ``key`` (idempotent)."""

    @abstractmethod
    async def remove(self, key: str, member: str) -> None:
        """Remove ``member`` from the set ``key`` (idempotent)."""

    @abstractmethod
    async def page(self, key: str, *, after: str | None = None, limit: int = 1000) -> KeySetPage:
        """Return up to ``limit`` members greater than ``after``, in ascending order."""

    @abstractmethod
    async def count(self, key: str) -> int:
        """Return the number of members of the set ``key``."""

    async def close(self) -> None:
        """Release connections; idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class Storage:
    """The storage a worker uses: a key-value storage and a key-set storage.

    Engines address their data through key prefixes, so one backend serves them all.
    """

    def __init__(self, key_value: KeyValueStorage, key_set: KeySetStorage) -> None:
        self.key_value = key_value
        self.key_set = key_set

    async def close(self) -> None:
        """Close both storages; idempotent."""
        await self.key_value.close()
        await self.key_set.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
