"""Automatic batching of key-value operations on PostgreSQL and MySQL.

An operation sent alone costs a pooled connection's checkout, the driver's bookkeeping and a
round trip; with hundreds of engines running at once, that per-operation overhead is most of a
worker's CPU. As Redis's auto-pipelining does (``_redis_pipeline``): an operation on an idle
storage is sent at once, from its caller's task; those issued while others are in flight are
queued, and a flush scheduled with ``call_soon`` (never a timer) sends up to ``max_batch`` of
them together, in one round trip (one statement on PostgreSQL, one multi-statement on MySQL), on
one pooled connection. Operations queued while a batch is in flight go in the next one; a few
batches may be in flight at once.

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

from infinitic.exceptions import InfiniticError, StorageError, VersionConflictError
from infinitic.storage._backend import SharedClient, describe_keys
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


class BatchedOperation:
    """One caller's operation: what it does, what to name in errors, when it times out (in
    event loop time), the future of its result."""

    __slots__ = ("deadline", "expected", "future", "keys", "kind", "name", "size", "value")

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
        self.kind = kind
        self.name = name
        self.keys = keys
        self.value = value
        self.expected = expected
        self.deadline = deadline
        self.future = future
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


class SqlAutoBatcher(Generic[ClientT]):
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
        self._shared = shared
        self._runner = runner
        self._max_batch = max(1, max_batch)
        self._max_in_flight = max(1, max_in_flight)
        self._timeout = shared.operation_timeout
        self._failures: tuple[type[BaseException], ...] = (
            TimeoutError,
            OSError,
            *shared.driver_errors(),
        )
        self._queue: list[BatchedOperation] = []
        self._flush_scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._alone = 0  # operations sent alone, from their callers' tasks
        self._writing: set[str] = set()  # keys written by the batches in flight
        self._closed = False

    async def call(
        self,
        kind: Kind,
        name: str,
        keys: Sequence[str],
        value: bytes = b"",
        expected: int | None = None,
    ) -> Any:
        """Run one operation (at once if the storage is idle, else in the next batch) and
        return its result.

        The wait is bounded by the operation timeout. A caller cancelled while its operation is
        queued takes it out of the queue; once sent, the operation runs on the server anyway.

        Raises:
            VersionConflictError: a compare-and-set found another version.
            StorageError: the storage is closed, the server failed, the connection was lost
                (twice) or the wait timed out.
        """
        if self._closed:
            raise StorageError(f"the {self._shared.backend} storage is closed; create a new one")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        deadline = loop.time() + self._timeout
        operation = BatchedOperation(kind, name, keys, value, expected, deadline, future)
        if not (self._queue or self._in_flight or self._alone):
            # Nothing to share a round trip with: send it now, from the caller's task.
            if kind != Kind.GET:
                self._writing.add(keys[0])
            self._alone += 1
            try:
                await self._send([operation])
            finally:
                self._alone -= 1
                self._schedule_flush()
            return await future
        self._queue.append(operation)
        if not self._flush_scheduled and len(self._in_flight) + self._alone < self._max_in_flight:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        # No timer per caller: the queue is first in, first out and every operation gets the
        # same timeout, so a batch bounded by the deadline of its oldest operation bounds the
        # wait of every caller (see _send).
        return await future

    async def close(self) -> None:
        """Fail the queued operations, let the batches in flight finish (up to the operation
        timeout, then cancel them); idempotent. Later calls raise StorageError."""
        if self._closed:
            return
        self._closed = True
        queued, self._queue = self._queue, []
        for operation in queued:
            self._fail_with(operation, self._closed_error(operation))
        if self._in_flight:
            _, late = await asyncio.wait(self._in_flight, timeout=self._timeout)
            for task in late:
                task.cancel()
            if late:
                # A cancelled batch fails its operations at once (see _send).
                await asyncio.wait(late, timeout=self._timeout)

    def _flush(self) -> None:
        self._flush_scheduled = False
        loop = asyncio.get_running_loop()
        while self._queue and len(self._in_flight) + self._alone < self._max_in_flight:
            batch = self._take()
            if not batch:  # what is left waits for a batch in flight (see _batch_done)
                break
            task = loop.create_task(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._batch_done)

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
            if operation.future.done():
                continue
            if operation.deadline <= now:
                self._fail_with(operation, self._timed_out(operation))
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

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._queue and not self._flush_scheduled and not self._closed:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _send(self, batch: list[BatchedOperation]) -> None:
        """Run one batch and settle each operation; never raises, except when cancelled.

        The batch is bounded by the deadline of its first operation, the oldest, so no caller
        waits past its own deadline (a later one may time out a little early).
        """
        try:
            async with asyncio.timeout_at(batch[0].deadline):
                await self._run(batch)
        except asyncio.CancelledError:
            # By close(), or else the caller of an operation sent alone, or the loop shutting down.
            by_close = self._closed and asyncio.current_task() in self._in_flight
            for operation in batch:
                if by_close:
                    self._fail_with(operation, self._closed_error(operation))
                else:
                    operation.future.cancel()
            raise
        except BaseException as e:  # each caller gets the batch's failure
            for operation in batch:
                self._fail(operation, e)
            if not isinstance(e, Exception):
                raise
        finally:
            self._writing.difference_update(op.key for op in batch if op.kind != Kind.GET)

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

    def _fail(self, operation: BatchedOperation, error: BaseException) -> None:
        """Fail one operation with ``error``, worded as ``SharedClient.translating`` words it."""
        if isinstance(error, InfiniticError) and not isinstance(error, VersionConflictError):
            wrapped = StorageError(
                f"{self._shared.backend} {operation.name} of {describe_keys(operation.keys)} "
                f"failed: {error}"
            )
            wrapped.__cause__ = error
            error = wrapped
        elif isinstance(error, self._failures):
            translated = self._shared.storage_error(
                operation.name, describe_keys(operation.keys), error
            )
            translated.__cause__ = error
            error = translated
        self._fail_with(operation, error)

    @staticmethod
    def _fail_with(operation: BatchedOperation, error: BaseException) -> None:
        if not operation.future.done():
            operation.future.set_exception(error)

    def _closed_error(self, operation: BatchedOperation) -> StorageError:
        return StorageError(
            f"{self._shared.backend} {operation.name} of {describe_keys(operation.keys)} was "
            "not done: the storage was closed; create a new one"
        )

    def _timed_out(self, operation: BatchedOperation) -> StorageError:
        what = describe_keys(operation.keys)
        return self._shared.storage_error(operation.name, what, TimeoutError())
