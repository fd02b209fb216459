"""One batch of key-value operations on PostgreSQL: one statement, one round trip.

The reads of a batch are one ``SELECT ... WHERE key = ANY($n)``; each kind of write is a
data-modifying CTE over ``unnest`` of its arrays (an upsert, an insert-if-absent with
``ON CONFLICT DO NOTHING``, a compare-and-set ``UPDATE ... FROM``, deletes), and every part
returns the keys it found or wrote, tagged, in one result. A write that returns no row did not
happen: a conflict, whose stored version one more query reads (as an operation alone does).

All parts of a statement see the same snapshot, so its reads see the state before its writes:
the operations of a batch were all pending at once, so that order is as valid as any. A batch
never writes one key twice (the batcher keeps the second write for a later batch), so no row is
modified twice in one statement, and the batches of one storage never write the same keys at
once. Writes are sorted by key so that the batches of several workers lock rows in the same
order; a deadlock between workers writing the same keys at once is still possible, and fails
the batch with a StorageError that can be retried.

A statement that fails for one operation's data (an invalid key, a value too big) is split in
halves until that operation runs alone and fails alone; nothing of a failed statement was
written, so running its operations again is safe.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from infinitic.storage._interfaces import VersionedValue
from infinitic.storage._sql_batching import BatchedOperation, BatchRunner, Fail, Kind

# Errors caused by one operation's data, not by the server or the connection.
_OPERATION_ERRORS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)

# The parts of a statement, as bits of its shape (and the tags of its rows).
_READ, _UPSERT, _INSERT, _UPDATE, _DELETE, _DELETE_VERSION = (1 << i for i in range(6))


class PostgresBatchRunner(BatchRunner["asyncpg.Pool"]):
    """Runs batches on the key-value table ``table`` (quoted, with its schema)."""

    unique_write_keys = True

    def __init__(self, table: str) -> None:
        self._kv = table
        self._statements: dict[int, str] = {}  # by shape; asyncpg prepares each once a connection
        self._sql_versions = f"SELECT key, version FROM {table} WHERE key = ANY($1::text[])"

    async def run(self, client: asyncpg.Pool, batch: list[BatchedOperation], fail: Fail) -> None:
        found: dict[str, VersionedValue] = {}
        written: dict[str, int] = {}  # by key: a batch writes a key once
        versions: dict[str, int] | None = None
        async with client.acquire() as conn:
            await self._run(conn, batch, fail, found, written)
            conflicts = [
                op.key
                for op in batch
                if op.kind != Kind.GET
                and op.expected is not None
                and op.key not in written
                and not op.future.done()
            ]
            if conflicts:
                # What was done is settled first: after a lost connection, the batcher sends
                # again only what is not settled.
                _settle(batch, found, written, None)
                rows = await conn.fetch(self._sql_versions, conflicts)
                versions = {row[0]: row[1] for row in rows}
        # Settled once the connection is back in the pool (asyncpg releases it in a task of its
        # own), so that callers resuming find the batch done.
        _settle(batch, found, written, versions)

    async def _run(
        self,
        conn: asyncpg.Connection,
        batch: list[BatchedOperation],
        fail: Fail,
        found: dict[str, VersionedValue],
        written: dict[str, int],
    ) -> None:
        """Run ``batch`` and note what it read and wrote; an operation failing alone goes to
        ``fail``."""
        sql, args = self._statement(batch)
        try:
            rows = await conn.fetch(sql, *args)
        except _OPERATION_ERRORS as e:
            if len(batch) == 1:
                fail(batch[0], e)
                return
            half = len(batch) // 2
            await self._run(conn, batch[:half], fail, found, written)
            await self._run(conn, batch[half:], fail, found, written)
            return
        for tag, key, value, version in rows:
            if tag == _READ:
                found[key] = VersionedValue(value, version)
            else:
                written[key] = version

    def _statement(self, batch: list[BatchedOperation]) -> tuple[str, list[list[object]]]:
        """The statement running ``batch`` and its arguments (arrays)."""
        reads: dict[str, None] = {}
        upserts: list[BatchedOperation] = []
        inserts: list[BatchedOperation] = []
        updates: list[BatchedOperation] = []
        deletes: list[BatchedOperation] = []
        delete_versions: list[BatchedOperation] = []
        for op in batch:
            if op.kind == Kind.GET:
                for key in op.keys:
                    reads[key] = None
            elif op.kind == Kind.PUT:
                expected = op.expected
                (upserts if expected is None else inserts if expected == 0 else updates).append(op)
            else:
                (deletes if op.expected is None else delete_versions).append(op)
        shape = 0
        args: list[list[object]] = []
        if reads:
            shape |= _READ
            args.append(list(reads))
        for bit, ops, columns in (
            (_UPSERT, upserts, _KEY_VALUE),
            (_INSERT, inserts, _KEY_VALUE),
            (_UPDATE, updates, _KEY_VALUE_EXPECTED),
            (_DELETE, deletes, _KEY),
            (_DELETE_VERSION, delete_versions, _KEY_EXPECTED),
        ):
            if ops:
                shape |= bit
                ops.sort(key=_by_key)  # concurrent statements lock rows in the same order
                args.extend([column(op) for op in ops] for column in columns)
        sql = self._statements.get(shape)
        if sql is None:
            sql = self._statements[shape] = self._build(shape)
        return sql, args

    def _build(self, shape: int) -> str:
        kv = self._kv
        count = 0

        def arrays(*types: str) -> str:
            nonlocal count
            count += len(types)
            return ", ".join(f"${count - len(types) + i + 1}::{t}[]" for i, t in enumerate(types))

        ctes: list[str] = []
        selects: list[str] = []
        if shape & _READ:
            selects.append(
                f"SELECT {_READ} AS tag, key, value, version FROM {kv} "
                f"WHERE key = ANY({arrays('text')})"
            )
        if shape & _UPSERT:
            ctes.append(
                f"w{_UPSERT} AS (INSERT INTO {kv} AS t (key, value, version) "
                f"SELECT k, v, 1 FROM unnest({arrays('text', 'bytea')}) AS u(k, v) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = t.version + 1 "
                "RETURNING t.key, t.version)"
            )
        if shape & _INSERT:
            ctes.append(
                f"w{_INSERT} AS (INSERT INTO {kv} (key, value, version) "
                f"SELECT k, v, 1 FROM unnest({arrays('text', 'bytea')}) AS u(k, v) "
                "ON CONFLICT (key) DO NOTHING RETURNING key, version)"
            )
        if shape & _UPDATE:
            ctes.append(
                f"w{_UPDATE} AS (UPDATE {kv} AS t SET value = u.v, version = t.version + 1 "
                f"FROM unnest({arrays('text', 'bytea', 'bigint')}) AS u(k, v, e) "
                "WHERE t.key = u.k AND t.version = u.e RETURNING t.key, t.version)"
            )
        if shape & _DELETE:
            ctes.append(
                f"w{_DELETE} AS (DELETE FROM {kv} WHERE key = ANY({arrays('text')}) "
                "RETURNING key, version)"
            )
        if shape & _DELETE_VERSION:
            ctes.append(
                f"w{_DELETE_VERSION} AS (DELETE FROM {kv} AS t "
                f"USING unnest({arrays('text', 'bigint')}) AS u(k, e) "
                "WHERE t.key = u.k AND t.version = u.e RETURNING t.key, t.version)"
            )
        for bit in (_UPSERT, _INSERT, _UPDATE, _DELETE, _DELETE_VERSION):
            if shape & bit:
                selects.append(f"SELECT {bit}, key, NULL::bytea, version FROM w{bit}")
        with_clause = f"WITH {', '.join(ctes)} " if ctes else ""
        return with_clause + " UNION ALL ".join(selects)


def _settle(
    batch: list[BatchedOperation],
    found: dict[str, VersionedValue],
    written: dict[str, int],
    versions: dict[str, int] | None,
) -> None:
    """Settle the operations of ``batch`` (but the conflicts when ``versions`` is None)."""
    for op in batch:
        if op.kind == Kind.GET:
            op.found(found)
        elif not op.written(written.get(op.key)) and versions is not None:
            op.conflicted(versions.get(op.key, 0))


def _by_key(op: BatchedOperation) -> str:
    return op.keys[0]


_Column = Callable[[BatchedOperation], object]
_KEY: tuple[_Column, ...] = (_by_key,)
_KEY_VALUE: tuple[_Column, ...] = (_by_key, lambda op: op.value)
_KEY_VALUE_EXPECTED: tuple[_Column, ...] = (_by_key, lambda op: op.value, lambda op: op.expected)
_KEY_EXPECTED: tuple[_Column, ...] = (_by_key, lambda op: op.expected)
