"""Automatic batching of key-value operations on PostgreSQL and MySQL.

Operations issued at the same time share one round trip (one statement on PostgreSQL, one
multi-statement on MySQL), sent by the queue of :mod:`infinitic.storage._auto_batch`, as Redis's
auto-pipelining does (``_redis_pipeline``).

Each caller gets its own result or error: a version conflict or a bad value fails its caller
only (see each backend's ``BatchRunner``); a lost connection retries the batch once on a new
connection (as ``SharedClient.run`` does for an operation alone), then fails it with
``StorageError``; a timeout fails it at once.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Any, ClassVar, Generic, TypeVar

from infinitic.exceptions import VersionConflictError
from infinitic.storage._auto_batch import AutoBatcher, QueuedOperation
from infinitic.storage._backend import SharedClient
from infinitic.storage._interfaces import VersionedValue

ClientT = TypeVar("ClientT")

# The most operations (keys, for a get_many) and value bytes in one batch, and the most batches
# in flight at once (so pooled connections used by the key-value storage): enough to keep the
# latency low under load. An operation alone may be bigger than a batch: it is never split.
MAX_BATCH = 512
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_IN_FLIGHT = 4


class Kind(IntEnum):
    """What an operation does."""

    GET = 0  # get (one key) and get_many (several): the result is what was found
    PUT = 1  # the result is the new version
    DELETE = 2  # the result is None; never with expected version 0 (a get does it)


class BatchedOperation(QueuedOperation):
    """One caller's operation: what it does, and its value and expected version (writes)."""

    __slots__ = ("expected", "kind", "size", "value")

    def __init__(
        self,
        kind: Kind,
        name: str,
        keys: Sequence[str],
        value: bytes,
        expected: int | None,
        deadline: float,
        future: asyncio.Future[Any],
    ) -> None:
        super().__init__(name, keys, deadline, future)
        self.kind = kind
        self.value = value
        self.expected = expected
        self.size = len(value)

    @property
    def key(self) -> str:
        return self.keys[0]

    def found(self, values: dict[str, VersionedValue]) -> None:
        """Settle a GET with what the batch found."""
        if self.future.done():
            return
        if self.name == "get":
            self.future.set_result(values.get(self.keys[0]))
        else:
            self.future.set_result({k: values[k] for k in self.keys if k in values})

    def written(self, version: int | None) -> bool:
        """Settle a PUT or DELETE with the new version (for a delete: any number), or None when
        nothing was written: return False when that is a conflict, to settle once the stored
        version is known (see ``conflicted``)."""
        if version is None and self.expected is not None:
            return False
        if not self.future.done():
            self.future.set_result(version if self.kind == Kind.PUT else None)
        return True

    def conflicted(self, actual: int) -> None:
        if not self.future.done():
            self.future.set_exception(VersionConflictError(self.key, self.expected, actual))


Fail = Callable[[BatchedOperation, BaseException], None]


class BatchRunner(ABC, Generic[ClientT]):
    """Runs a batch on one backend and settles each of its operations."""

    # Whether a batch may not write one key twice (when its writes run as one statement); else
    # a batch's writes of one key run in their order.
    unique_write_keys: ClassVar[bool] = False

    def max_batch_bytes(self) -> int:
        """The most value bytes in one batch (read at each batch)."""
        return MAX_BATCH_BYTES

    @abstractmethod
    async def run(self, client: ClientT, batch: list[BatchedOperation], fail: Fail) -> None:
        """Run ``batch`` on a connection of ``client`` and settle each of its operations (an
        operation's own failure goes to ``fail``); raise when the whole batch failed."""


class SqlAutoBatcher(AutoBatcher[BatchedOperation, ClientT]):
    """Sends the key-value operations queued on one event loop together, a batch at a time.

    Args:
        shared: the client whose pool provides the connections.
        runner: how a batch runs on this backend.
        max_batch: the most operations (keys, for a get_many) in one batch.
        max_in_flight: the most batches (so connections) in flight at once.
    """

    def __init__(
        self,
        shared: SharedClient[ClientT],
        runner: BatchRunner[ClientT],
        *,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        super().__init__(shared, max_in_flight=max_in_flight)
        self._runner = runner
        self._max_batch = max(1, max_batch)
        self._writing: set[str] = set()  # keys written by the batches in flight

    async def call(
        self,
        kind: Kind,
        name: str,
        keys: Sequence[str],
        value: bytes = b"",
        expected: int | None = None,
    ) -> Any:
        """Run one operation (at once if the storage is idle, else in the next batch) and
        return its result. The wait is bounded by the operation timeout.

        Raises:
            VersionConflictError: a compare-and-set found another version.
            StorageError: the storage is closed, the server failed, the connection was lost
                (twice) or the wait timed out.
        """
        deadline, future = self._deadline_and_future()
        return await self._submit(
            BatchedOperation(kind, name, keys, value, expected, deadline, future)
        )

    def _sending(self, operation: BatchedOperation) -> None:
        if operation.kind != Kind.GET:
            self._writing.add(operation.key)

    def _sent(self, batch: list[BatchedOperation]) -> None:
        self._writing.difference_update(op.key for op in batch if op.kind != Kind.GET)

    def _take(self) -> list[BatchedOperation]:
        """Take the next batch off the queue, in order, dropping the operations whose caller
        left and failing those whose deadline passed while they waited.

        A write of a key that a batch in flight writes stays queued, for a later batch (as does
        a second write of a key in one batch, when the runner needs unique keys): a key's writes
        run one after the other, in their order, and batches in flight never wait for each
        other's row locks. What would overflow the batch stays queued too.
        """
        now = asyncio.get_running_loop().time()
        unique = self._runner.unique_write_keys
        max_bytes = self._runner.max_batch_bytes()
        in_flight = self._writing
        batch: list[BatchedOperation] = []
        writing: set[str] = set()
        left: list[BatchedOperation] = []
        count = size = 0
        full = False
        for operation in self._queue:
            if full:
                left.append(operation)
                continue
            if not self._usable(operation, now):
                continue
            write = operation.kind != Kind.GET
            if write and (operation.key in in_flight or (unique and operation.key in writing)):
                left.append(operation)
                continue
            count += len(operation.keys)
            size += operation.size
            if batch and (count > self._max_batch or size > max_bytes):
                full = True
                left.append(operation)
                continue
            if write:
                writing.add(operation.key)
            batch.append(operation)
        self._queue = left
        in_flight |= writing
        return batch

    async def _run(self, batch: list[BatchedOperation]) -> None:
        """Run the batch, and once more (what it did not settle) after a lost connection."""
        client = await self._shared.client()
        try:
            await self._runner.run(client, batch, self._fail)
            return
        except self._failures as e:
            if not self._shared.is_connection_lost(e):
                raise
        # Like SharedClient.run: a write retried after a lost reply may then report a
        # VersionConflictError for its own write, which callers handle as any conflict.
        await self._shared.connection_lost(client)
        client = await self._shared.client()
        rest = [operation for operation in batch if not operation.future.done()]
        if rest:
            await self._runner.run(client, rest, self._fail)
