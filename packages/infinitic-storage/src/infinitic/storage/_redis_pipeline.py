"""Automatic pipelining of Redis commands (as ioredis's ``enableAutoPipelining`` does).

Each command sent alone costs a connection checkout, a retry wrapper, timeouts and a round trip;
with dozens of engines running at once, that per-command overhead is most of a worker's CPU. So
an operation on an idle storage is sent at once, from its caller's task, and the operations
issued while others are in flight are queued: a flush, scheduled with ``call_soon`` (never a
timer), sends up to ``max_batch`` commands as one pipeline (no MULTI) on one pooled connection.
Operations queued while a batch is in flight go in the next one; a few batches may be in flight
at once.

Each caller gets its own reply or its own error: a command error (a key of the wrong type) fails
its caller only, a lost connection or a timeout fails every operation of the batch. Scripts run
by EVALSHA; a NOSCRIPT reply (after a restart or a SCRIPT FLUSH) loads them and resends those
commands, once, on the same connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from infinitic.exceptions import InfiniticError, StorageError
from infinitic.storage._backend import SharedClient, describe_keys

Command = tuple[Any, ...]


class PipelinedOperation:
    """One caller's operation: its commands, what to name in errors, when it times out (in
    event loop time), the future of its replies."""

    __slots__ = ("commands", "deadline", "future", "keys", "name")

    def __init__(
        self,
        name: str,
        keys: Sequence[str],
        commands: Sequence[Command],
        deadline: float,
        future: asyncio.Future[list[Any]],
    ) -> None:
        self.name = name
        self.keys = keys
        self.commands = commands
        self.deadline = deadline
        self.future = future


class RedisAutoPipeline:
    """Sends the operations queued on one event loop together, one pipeline per batch.

    Args:
        shared: the client whose pool provides the connections.
        scripts: the Lua source of each script, by SHA1, to load after a NOSCRIPT reply.
        max_batch: the most commands in one pipeline (an operation is never split).
        max_in_flight: the most batches (so connections) in flight at once.
        enabled: False sends each operation alone, from its caller's task, as soon as it is
            called (no queue: the pool bounds the connections).
    """

    def __init__(
        self,
        shared: SharedClient[aioredis.Redis],
        scripts: Mapping[str, str],
        *,
        max_batch: int,
        max_in_flight: int,
        enabled: bool = True,
    ) -> None:
        self._shared = shared
        self._enabled = enabled
        self._scripts = dict(scripts)
        self._max_batch = max(1, max_batch)
        self._max_in_flight = max(1, max_in_flight)
        self._timeout = shared.operation_timeout
        self._queue: list[PipelinedOperation] = []
        self._flush_scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._alone = 0  # operations sent alone, from their callers' tasks
        self._closed = False

    async def call(self, name: str, keys: Sequence[str], commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` (at once if the storage is idle, else in the next batch) and return
        their replies, in order.

        ``name`` (``"get"``, ``"put"``...) and ``keys`` name the operation in error messages.
        The wait is bounded by the operation timeout. A caller cancelled while its operation is
        queued takes it out of the queue; once sent, the commands run on the server anyway.

        Raises:
            StorageError: the storage is closed, Redis failed, the connection was lost or the
                wait timed out; or a command got an error reply.
        """
        if self._closed:
            raise StorageError(f"the {self._shared.backend} storage is closed; create a new one")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        deadline = loop.time() + self._timeout
        operation = PipelinedOperation(name, keys, commands, deadline, future)
        if not self._enabled or not (self._queue or self._in_flight or self._alone):
            # Nothing to share a round trip with: send it now, from the caller's task.
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
            self._fail(operation, self._closed_error(operation))
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
            if batch:
                task = loop.create_task(self._send(batch))
                self._in_flight.add(task)
                task.add_done_callback(self._batch_done)

    def _take(self) -> list[PipelinedOperation]:
        """Take the next batch off the queue, dropping the operations whose caller left and
        failing those whose deadline passed while they waited."""
        queue = self._queue
        if sum(len(op.commands) for op in queue) <= self._max_batch:
            taken, self._queue = queue, []
        else:
            size = end = 0
            for operation in queue:
                size += len(operation.commands)
                if size > self._max_batch and end > 0:  # an operation alone may be bigger
                    break
                end += 1
            taken = queue[:end]
            del queue[:end]
        now = asyncio.get_running_loop().time()
        batch: list[PipelinedOperation] = []
        for operation in taken:
            if operation.future.done():
                continue
            if operation.deadline <= now:
                self._fail(operation, self._timed_out(operation))
            else:
                batch.append(operation)
        return batch

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._queue and not self._flush_scheduled and not self._closed:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _send(self, batch: list[PipelinedOperation]) -> None:
        """Run one batch and settle each operation; never raises, except when cancelled.

        The batch is bounded by the deadline of its first operation, the oldest, so no caller
        waits past its own deadline (a later one may time out a little early).
        """
        try:
            async with asyncio.timeout_at(batch[0].deadline):
                try:
                    client = await self._shared.client()
                except InfiniticError as e:
                    for operation in batch:
                        self._fail(operation, self._wrapped(operation, e))
                    return
                commands = [command for operation in batch for command in operation.commands]
                replies = await self._execute(client, commands)
        except asyncio.CancelledError:
            # By close(), or else the caller of an operation sent alone, or the loop shutting down.
            by_close = self._closed and asyncio.current_task() in self._in_flight
            for operation in batch:
                if by_close:
                    self._fail(operation, self._closed_error(operation))
                else:
                    operation.future.cancel()
            raise
        except BaseException as e:  # each caller gets the batch's failure
            for operation in batch:
                self._fail(operation, self._translated(operation, e))
            if not isinstance(e, Exception):
                raise
            return
        start = 0
        for operation in batch:
            end = start + len(operation.commands)
            if not operation.future.done():
                mine = replies[start:end]
                error = next((r for r in mine if isinstance(r, BaseException)), None)
                if error is None:
                    operation.future.set_result(mine)
                else:
                    operation.future.set_exception(self._translated(operation, error))
            start = end

    async def _execute(self, client: aioredis.Redis, commands: list[Command]) -> list[Any]:
        replies = await self._pipeline(client, commands)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            # Only EVALSHA answers NOSCRIPT, and a command that did not find its script did
            # nothing, so loading the scripts and resending exactly those commands is safe.
            shas = dict.fromkeys(commands[i][1] for i in missing)
            loads = [("SCRIPT LOAD", self._scripts[sha]) for sha in shas]
            again = await self._pipeline(client, loads + [commands[i] for i in missing])
            for i, reply in zip(missing, again[len(loads) :], strict=True):
                replies[i] = reply
        return replies

    @staticmethod
    async def _pipeline(client: aioredis.Redis, commands: list[Command]) -> list[Any]:
        if len(commands) == 1:
            # An operation alone: the client's own path costs less CPU than a pipeline of one.
            try:
                return [await client.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
            except ResponseError as e:
                return [e]
        async with client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=False)

    @staticmethod
    def _fail(operation: PipelinedOperation, error: BaseException) -> None:
        if not operation.future.done():
            operation.future.set_exception(error)

    def _closed_error(self, operation: PipelinedOperation) -> StorageError:
        return StorageError(
            f"{self._shared.backend} {operation.name} of {describe_keys(operation.keys)} was "
            "not done: the storage was closed; create a new one"
        )

    def _timed_out(self, operation: PipelinedOperation) -> StorageError:
        what = describe_keys(operation.keys)
        return self._shared.storage_error(operation.name, what, TimeoutError())

    def _wrapped(self, operation: PipelinedOperation, error: InfiniticError) -> StorageError:
        wrapped = StorageError(
            f"{self._shared.backend} {operation.name} of {describe_keys(operation.keys)} "
            f"failed: {error}"
        )
        wrapped.__cause__ = error
        return wrapped

    def _translated(self, operation: PipelinedOperation, error: BaseException) -> BaseException:
        """The error one caller sees, worded as ``SharedClient.translating`` words it."""
        if isinstance(error, InfiniticError):
            return self._wrapped(operation, error)
        if not isinstance(error, TimeoutError | OSError | RedisError):
            return error
        translated = self._shared.storage_error(
            operation.name, describe_keys(operation.keys), error
        )
        translated.__cause__ = error
        return translated
