"""Automatic pipelining of Redis commands (as ioredis's ``enableAutoPipelining`` does).

Operations issued at the same time share one pipeline (no MULTI) of up to ``max_batch``
commands, sent by the queue of :mod:`infinitic.storage._auto_batch`.

Each caller gets its own reply or its own error: a command error (a key of the wrong type) fails
its caller only, a lost connection or a timeout fails every operation of the batch. Scripts run
by EVALSHA; a NOSCRIPT reply (after a restart or a SCRIPT FLUSH) loads them and resends those
commands, once, on the same connection.

A batch is one exchange on a connection of the client's pool (connected, authenticated and
health-checked by redis-py): the commands are packed here as one RESP buffer, sent with the
connection's ``send_packed_command``, and the replies parsed by hiredis from the connection's
stream. redis-py's pipeline spent about 200,000 instructions
per command (its per-command objects, callbacks and per-reply reads), this exchange about 43,000
(measured with a 12-command batch of HMGET and EVALSHA, valgrind instruction counts). Without
hiredis, or on a redis-py whose connection keeps its streams elsewhere, the replies are read with
the connection's public ``read_response``. A connection whose exchange did not finish (a timeout,
a cancellation, a lost connection) is closed before it goes back to the pool, so no reply is ever
read by the wrong caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis comes with the redis extra
    hiredis = None  # type: ignore[assignment]

from infinitic.storage._auto_batch import AutoBatcher, QueuedOperation
from infinitic.storage._backend import SharedClient

Command = tuple[Any, ...]


class PipelinedOperation(QueuedOperation):
    """One caller's operation and its commands."""

    __slots__ = ("commands",)

    def __init__(
        self,
        name: str,
        keys: Sequence[str],
        commands: Sequence[Command],
        deadline: float,
        future: asyncio.Future[Any],
    ) -> None:
        super().__init__(name, keys, deadline, future)
        self.commands = commands


class RedisAutoPipeline(AutoBatcher[PipelinedOperation, aioredis.Redis]):
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
        super().__init__(shared, max_in_flight=max_in_flight, enabled=enabled)
        self._scripts = dict(scripts)
        self._max_batch = max(1, max_batch)
        # Connections kept between batches (at most one per batch in flight): taking one from
        # the pool and giving it back costs more than the exchange of a small batch (the
        # pool's lock, its connection checks and counters, twice).
        self._kept: list[Any] = []
        self._kept_from: Any = None  # the pool they belong to

    async def call(self, name: str, keys: Sequence[str], commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` (at once if the storage is idle, else in the next batch) and return
        their replies, in order.

        ``name`` (``"get"``, ``"put"``...) and ``keys`` name the operation in error messages.
        The wait is bounded by the operation timeout.

        Raises:
            StorageError: the storage is closed, Redis failed, the connection was lost or the
                wait timed out; or a command got an error reply.
        """
        deadline, future = self._deadline_and_future()
        result: list[Any] = await self._submit(
            PipelinedOperation(name, keys, commands, deadline, future)
        )
        return result

    def _take(self) -> list[PipelinedOperation]:
        """The oldest queued operations, up to ``max_batch`` commands (an operation alone may
        have more)."""
        queue = self._queue
        now = asyncio.get_running_loop().time()
        batch: list[PipelinedOperation] = []
        size = taken = 0
        for operation in queue:
            if self._usable(operation, now):
                if batch and size + len(operation.commands) > self._max_batch:
                    break
                size += len(operation.commands)
                batch.append(operation)
            taken += 1
        del queue[:taken]
        return batch

    async def _run(self, batch: list[PipelinedOperation]) -> None:
        client = await self._shared.client()
        commands = [command for operation in batch for command in operation.commands]
        replies = await self._execute(client, commands)
        start = 0
        for operation in batch:
            end = start + len(operation.commands)
            if not operation.future.done():
                mine = replies[start:end]
                error = next((r for r in mine if isinstance(r, BaseException)), None)
                if error is None:
                    operation.future.set_result(mine)
                else:
                    self._fail(operation, error)
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

    async def close(self) -> None:
        await super().close()
        kept, self._kept = self._kept, []
        for connection in kept:
            with contextlib.suppress(Exception):  # the pool is closed with the client anyway
                await self._kept_from.release(connection)

    async def _connection(self, pool: Any) -> Any:
        """A kept connection, ready to send (nothing left to read, still open), or one from
        the pool."""
        if pool is not self._kept_from:  # a new client (after a reconnection): start over
            self._kept, self._kept_from = [], pool
        while self._kept:
            connection = self._kept.pop()
            if _ready(connection):
                return connection
            await _give_back(pool, connection)
        return await pool.get_connection()

    def _keep(self, pool: Any, connection: Any) -> bool:
        """Keep ``connection`` for the next batch unless enough are kept or it is not ready."""
        if self._closed or pool is not self._kept_from or len(self._kept) >= self._max_in_flight:
            return False
        if not _ready(connection):
            return False
        self._kept.append(connection)
        return True

    async def _pipeline(self, client: aioredis.Redis, commands: list[Command]) -> list[Any]:
        pool = client.connection_pool
        connection = await self._connection(pool)
        plain = not pool.connection_kwargs.get("decode_responses", False)

        async def exchange() -> list[Any]:
            return await _exchange(connection, commands, plain)

        async def failed(_: BaseException) -> None:
            await connection.disconnect()  # the next attempt reconnects

        try:
            # The driver's retry policy, as its pipeline applies it: a connection killed
            # between two batches is replaced without failing the callers.
            retry = getattr(connection, "retry", None)
            if retry is None:
                replies: list[Any] = await exchange()
            else:
                replies = await retry.call_with_retry(exchange, failed)
        except BaseException:
            # Replies may still be on their way: nobody else may read them. The kept ones go
            # too: what failed this one (a restart, killed clients) likely failed them, and
            # the next call must find a fresh connection.
            kept, self._kept = self._kept, []
            for dropped in (connection, *kept):
                with contextlib.suppress(Exception):
                    await dropped.disconnect(nowait=True)
                await _give_back(pool, dropped)
            raise
        if not self._keep(pool, connection):
            await pool.release(connection)
        return replies


def _ready(connection: Any) -> bool:
    """A kept connection can send: it is open, and holds no bytes nobody asked for (a reply
    of a batch that did not finish would be read by the next one)."""
    if not getattr(connection, "is_connected", False):
        return False
    reader = getattr(connection, "_reader", None)
    if isinstance(reader, asyncio.StreamReader):
        return not reader.at_eof() and not getattr(reader, "_buffer", b"")  # no public peek
    return True


async def _give_back(pool: Any, connection: Any) -> None:
    with contextlib.suppress(Exception):
        await pool.release(connection)


def pack_commands(commands: list[Command]) -> bytes:
    """The RESP encoding of ``commands`` (arguments: bytes, str or int; a command name of two
    words, ``"SCRIPT LOAD"``, is two arguments), as one buffer."""
    out: list[bytes] = []
    append = out.append
    for command in commands:
        name = command[0]
        if isinstance(name, str) and " " in name:  # "SCRIPT LOAD": two words of the command
            command = (*name.split(), *command[1:])
        append(b"*%d\r\n" % len(command))
        for argument in command:
            if isinstance(argument, str):
                argument = argument.encode()
            elif isinstance(argument, int):
                argument = b"%d" % argument
            elif not isinstance(argument, bytes):
                argument = bytes(argument)
            append(b"$%d\r\n" % len(argument))
            append(argument)
            append(b"\r\n")
    return b"".join(out)


async def _exchange(connection: Any, commands: list[Command], plain: bool) -> list[Any]:
    """Send ``commands`` on ``connection`` and read their replies; an error reply is returned
    in place (a :class:`NoScriptError` for NOSCRIPT, else a :class:`ResponseError`). ``plain``:
    the pool gives bytes (hiredis is then used to parse, if installed)."""
    await connection.send_packed_command(pack_commands(commands), check_health=False)
    reader = getattr(connection, "_reader", None)
    replies: list[Any] = []
    if hiredis is None or not plain or not isinstance(reader, asyncio.StreamReader):
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as e:
                replies.append(e)
        return replies
    parser = hiredis.Reader()
    while len(replies) < len(commands):
        reply = parser.gets()
        if reply is False:
            data = await reader.read(65536)
            if not data:
                raise RedisConnectionError("Connection closed by server.")
            parser.feed(data)
            continue
        replies.append(_error(reply) if isinstance(reply, hiredis.ReplyError) else reply)
    return replies


def _error(reply: Exception) -> ResponseError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)
