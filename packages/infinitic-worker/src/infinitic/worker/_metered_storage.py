"""Storage wrappers measuring the latency of each operation the engines make, and counting
the workflow instances a state engine creates and ends (the first and last writes of a state).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence

from infinitic.common import workflow_state_key
from infinitic.storage import (
    KeySetPage,
    KeySetStorage,
    KeyValueStorage,
    Storage,
    VersionedValue,
)
from infinitic.worker._metrics import Timer, WorkerMetrics

_SUFFIX = re.compile(r"(KeyValueStorage|KeySetStorage|Storage)$")


def backend_name(storage: object) -> str:
    """The ``backend`` label of a storage: its class name without the storage suffix, in
    lower case, and those of the storages it wraps (``redis``, ``cached+compressed+redis``)."""
    names = []
    seen = 0
    while isinstance(storage, KeyValueStorage | KeySetStorage) and seen < 8:
        name = type(storage).__name__
        names.append(_SUFFIX.sub("", name).lower() or name.lower())
        storage = getattr(storage, "storage", None)
        seen += 1
    return "+".join(names) or type(storage).__name__.lower()


def _bind(metrics: WorkerMetrics, backend: str, operations: Sequence[str]) -> dict[str, Timer]:
    return {op: metrics.storage_timer(backend, op) for op in operations}


class MeteredKeyValueStorage(KeyValueStorage):
    """A key-value storage timing each operation of another one.

    Given a workflow name, a state of that workflow written where none was (expected version
    0) counts as a start, and a state deleted as a completion.
    """

    def __init__(
        self, storage: KeyValueStorage, metrics: WorkerMetrics, workflow: str | None = None
    ) -> None:
        self.storage = storage
        self._ops = _bind(
            metrics, backend_name(storage), ("get", "get_many", "put", "put_many", "delete")
        )
        self._state_prefix: str | None = None
        if workflow is not None:
            self._state_prefix = workflow_state_key(workflow, "")
            self._instances = metrics.workflow_meter(workflow)

    async def get(self, key: str) -> VersionedValue | None:
        start = time.perf_counter()
        try:
            return await self.storage.get(key)
        finally:
            self._ops["get"].observe(time.perf_counter() - start)

    async def get_many(self, keys: Sequence[str]) -> dict[str, VersionedValue]:
        start = time.perf_counter()
        try:
            return await self.storage.get_many(keys)
        finally:
            self._ops["get_many"].observe(time.perf_counter() - start)

    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        start = time.perf_counter()
        try:
            version = await self.storage.put(key, value, expected_version=expected_version)
        finally:
            self._ops["put"].observe(time.perf_counter() - start)
        if expected_version == 0 and self._is_state(key):
            self._instances.starts += 1
        return version

    async def put_many(self, items: Mapping[str, bytes]) -> None:
        start = time.perf_counter()
        try:
            await self.storage.put_many(items)
        finally:
            self._ops["put_many"].observe(time.perf_counter() - start)

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        start = time.perf_counter()
        try:
            await self.storage.delete(key, expected_version=expected_version)
        finally:
            self._ops["delete"].observe(time.perf_counter() - start)
        # A state is deleted once, with its version checked, when its instance ended.
        if expected_version is not None and self._is_state(key):
            self._instances.completions += 1

    def _is_state(self, key: str) -> bool:
        return self._state_prefix is not None and key.startswith(self._state_prefix)

    async def close(self) -> None:
        await self.storage.close()


class MeteredKeySetStorage(KeySetStorage):
    """A key-set storage timing each operation of another one."""

    def __init__(self, storage: KeySetStorage, metrics: WorkerMetrics) -> None:
        self.storage = storage
        self._ops = _bind(metrics, backend_name(storage), ("add", "remove", "page", "count"))

    async def add(self, key: str, member: str) -> None:
        start = time.perf_counter()
        try:
            await self.storage.add(key, member)
        finally:
            self._ops["add"].observe(time.perf_counter() - start)

    async def remove(self, key: str, member: str) -> None:
        start = time.perf_counter()
        try:
            await self.storage.remove(key, member)
        finally:
            self._ops["remove"].observe(time.perf_counter() - start)

    async def page(self, key: str, *, after: str | None = None, limit: int = 1000) -> KeySetPage:
        start = time.perf_counter()
        try:
            return await self.storage.page(key, after=after, limit=limit)
        finally:
            self._ops["page"].observe(time.perf_counter() - start)

    async def count(self, key: str) -> int:
        start = time.perf_counter()
        try:
            return await self.storage.count(key)
        finally:
            self._ops["count"].observe(time.perf_counter() - start)

    async def close(self) -> None:
        await self.storage.close()


def metered_storage(
    storage: Storage, metrics: WorkerMetrics, workflow: str | None = None
) -> Storage:
    """``storage`` with its operations timed (and, for ``workflow``'s state engine, its
    instances counted)."""
    return Storage(
        MeteredKeyValueStorage(storage.key_value, metrics, workflow),
        MeteredKeySetStorage(storage.key_set, metrics),
    )
