"""Operations issued at the same time share one round trip (Redis pipelines, SQL batches).

An operation sent alone costs a pooled connection's checkout, the driver's bookkeeping and a
round trip; with hundreds of engines running at once, that per-operation overhead is most of a
worker's CPU. So an operation on an idle storage is sent at once, from its caller's task, and
those issued while others are in flight are queued: a flush scheduled with ``call_soon`` (never
a timer) takes a batch off the queue and sends it as one round trip on one pooled connection.
Operations queued while a batch is in flight go in the next one; a few batches may be in flight
at once. Each caller gets its own result or its own error.

:class:`AutoBatcher` is that queue; each backend says how a batch is taken and run.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from infinitic.exceptions import InfiniticError, StorageError, VersionConflictError
from infinitic.storage._backend import SharedClient, describe_keys


class QueuedOperation:
    """One caller's operation: what to name in errors, when it times out (in event loop time),
    the future of its result."""

    __slots__ = ("deadline", "future", "keys", "name")

    def __init__(
        self, name: str, keys: Sequence[str], deadline: float, future: asyncio.Future[Any]
    ) -> None:
        self.name = name
        self.keys = keys
        self.deadline = deadline
        self.future = future


OpT = TypeVar("OpT", bound=QueuedOperation)
ClientT = TypeVar("ClientT")


class AutoBatcher(ABC, Generic[OpT, ClientT]):
    """The queue of operations waiting to share a round trip, on one event loop.

    Args:
        shared: the client whose pool provides the connections.
        max_in_flight: the most batches (so connections) in flight at once.
        enabled: False sends each operation alone, from its caller's task, as soon as it is
            called (no queue: the pool bounds the connections).
    """

    def __init__(
        self, shared: SharedClient[ClientT], *, max_in_flight: int, enabled: bool = True
    ) -> None:
        self._shared = shared
        self._enabled = enabled
        self._max_in_flight = max(1, max_in_flight)
        self._timeout = shared.operation_timeout
        self._failures: tuple[type[BaseException], ...] = (
            TimeoutError,
            OSError,
            *shared.driver_errors(),
        )
        self._queue: list[OpT] = []
        self._flush_scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._alone = 0  # operations sent alone, from their callers' tasks
        self._closed = False

    # -- what each backend says ---------------------------------------------------------------

    @abstractmethod
    def _take(self) -> list[OpT]:
        """Take the next batch off ``self._queue`` (use :meth:`_usable` to drop the operations
        whose caller left and fail those whose deadline passed). Empty only when nothing queued
        can go now."""

    @abstractmethod
    async def _run(self, batch: list[OpT]) -> None:
        """Run ``batch`` and settle each of its operations; raise when the whole batch failed."""

    def _sending(self, operation: OpT) -> None:
        """Called before an operation is sent alone."""

    def _sent(self, batch: list[OpT]) -> None:
        """Called once a batch (or an operation sent alone) is done."""

    # -- the queue ----------------------------------------------------------------------------

    def _deadline_and_future(self) -> tuple[float, asyncio.Future[Any]]:
        """The deadline and future of a new operation.

        Raises:
            StorageError: the storage is closed.
        """
        if self._closed:
            raise StorageError(f"the {self._shared.backend} storage is closed; create a new one")
        loop = asyncio.get_running_loop()
        return loop.time() + self._timeout, loop.create_future()

    async def _submit(self, operation: OpT) -> Any:
        """Send ``operation`` (at once if the storage is idle, else in the next batch) and
        return its result.

        The wait is bounded by the operation timeout. A caller cancelled while its operation is
        queued takes it out of the queue; once sent, the operation runs on the server anyway.
        """
        if not self._enabled or not (self._queue or self._in_flight or self._alone):
            # Nothing to share a round trip with: send it now, from the caller's task.
            self._sending(operation)
            self._alone += 1
            try:
                await self._send([operation])
            finally:
                self._alone -= 1
                self._schedule_flush()
            return await operation.future
        self._queue.append(operation)
        self._schedule_flush()
        # No timer per caller: the queue is first in, first out and every operation gets the
        # same timeout, so a batch bounded by the deadline of its oldest operation bounds the
        # wait of every caller (see _send).
        return await operation.future

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

    def _schedule_flush(self) -> None:
        if (
            self._queue
            and not self._flush_scheduled
            and not self._closed
            and len(self._in_flight) + self._alone < self._max_in_flight
        ):
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

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

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._schedule_flush()

    def _usable(self, operation: OpT, now: float) -> bool:
        """False for an operation whose caller left, or whose deadline passed (it is failed)."""
        if operation.future.done():
            return False
        if operation.deadline <= now:
            self._fail_with(operation, self._timed_out(operation))
            return False
        return True

    async def _send(self, batch: list[OpT]) -> None:
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
            self._sent(batch)

    # -- errors -------------------------------------------------------------------------------

    def _fail(self, operation: OpT, error: BaseException) -> None:
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
    def _fail_with(operation: QueuedOperation, error: BaseException) -> None:
        if not operation.future.done():
            operation.future.set_exception(error)

    def _closed_error(self, operation: QueuedOperation) -> StorageError:
        return StorageError(
            f"{self._shared.backend} {operation.name} of {describe_keys(operation.keys)} was "
            "not done: the storage was closed; create a new one"
        )

    def _timed_out(self, operation: QueuedOperation) -> StorageError:
        what = describe_keys(operation.keys)
        return self._shared.storage_error(operation.name, what, TimeoutError())
