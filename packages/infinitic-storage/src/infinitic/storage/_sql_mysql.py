"""One batch of key-value operations on MySQL or MariaDB: one multi-statement, one round trip.

The reads of a batch are one ``SELECT ... WHERE k IN (...)``, first; then each write is the
statement an operation alone runs, one after the other, so a batch may write a key twice: its
statements run in order, as the operations would alone. Several writes run in one transaction
(one commit, so one flush of the redo log, instead of one each), sorted by key (a key's writes
keep their order) so that concurrent batches lock rows in the same order. Keys and values are
written as hexadecimal literals (``X'...'``): the text needs no escaping and no charset
conversion. A write that changed no row is a conflict, whose stored version one more query reads
(as an operation alone does). An insert-if-absent updates nothing on a duplicate key
(``ON DUPLICATE KEY UPDATE version = version``) rather than failing, because the server stops a
multi-statement at its first error.

When a statement fails (a key too long, a deadlock...), the server runs none of the next ones.
In a transaction, the batch rolls it back and sends its writes again one statement each (each
committed on its own: no deadlock is possible); otherwise the statements before the failed one
are settled, its operation fails alone, and the next ones are sent again.
"""

from __future__ import annotations

from typing import Any, Protocol

import aiomysql

from infinitic.storage._interfaces import VersionedValue
from infinitic.storage._sql_batching import BatchedOperation, BatchRunner, Fail, Kind


class MySQLTable(Protocol):
    """What a batch needs to know of the key-value table and of the server."""

    kv: str
    max_allowed_packet: int

    def upsert(self, rows: str, version: str) -> str: ...

    def is_connection_lost(self, error: BaseException) -> bool: ...


def _hex(data: bytes) -> str:
    return f"X'{data.hex()}'"


def _by_key(op: BatchedOperation) -> str:
    return op.keys[0]


def _settle(
    batch: list[BatchedOperation],
    found: dict[str, VersionedValue],
    written: list[tuple[BatchedOperation, int | None]],
    versions: dict[str, int] | None,
) -> None:
    """Settle the operations of ``batch`` (but the conflicts when ``versions`` is None)."""
    for op in batch:
        if op.kind == Kind.GET:
            op.found(found)
    for op, version in written:
        if not op.written(version) and versions is not None:
            op.conflicted(versions.get(op.key, 0))


class MySQLBatchRunner(BatchRunner["aiomysql.Pool"]):
    """Runs batches on the key-value table of ``table``."""

    unique_write_keys = False

    def __init__(self, table: MySQLTable) -> None:
        self._table = table

    def max_batch_bytes(self) -> int:
        # Values and keys travel as hexadecimal (twice their size) in one packet.
        return max(64 * 1024, self._table.max_allowed_packet // 8)

    async def run(self, client: aiomysql.Pool, batch: list[BatchedOperation], fail: Fail) -> None:
        found: dict[str, VersionedValue] = {}
        written: list[tuple[BatchedOperation, int | None]] = []
        versions: dict[str, int] | None = None
        conn = await client.acquire()
        try:
            async with conn.cursor() as cur:
                rest, atomic = batch, True
                while rest:
                    rest, atomic = await self._run(cur, rest, fail, found, written, atomic)
                conflicts = [op.key for op, v in written if v is None and op.expected is not None]
                if conflicts:
                    # What was done is settled first: after a lost connection, the batcher
                    # sends again only what is not settled.
                    _settle(batch, found, written, None)
                    versions = await self._versions(cur, conflicts)
        except BaseException:
            # The connection may be half-way through a reply (a timeout, a kill): never reuse it.
            conn.close()
            raise
        finally:
            await client.release(conn)
        # Settled once the connection is back in the pool, so that callers resuming find the
        # batch done.
        _settle(batch, found, written, versions)

    async def _run(
        self,
        cur: aiomysql.Cursor,
        batch: list[BatchedOperation],
        fail: Fail,
        found: dict[str, VersionedValue],
        written: list[tuple[BatchedOperation, int | None]],
        atomic: bool,
    ) -> tuple[list[BatchedOperation], bool]:
        """Send the statements of ``batch`` (its writes in one transaction if ``atomic``) and
        note what they read and wrote (an operation failing alone goes to ``fail``); return the
        operations left to send again after a statement failed, and whether they may share a
        transaction."""
        literals: dict[str, str] = {}  # of each key
        gets: list[BatchedOperation] = []
        writes: list[BatchedOperation] = []
        for op in batch:
            try:
                for key in op.keys:
                    if key not in literals:
                        literals[key] = _hex(key.encode())
            except UnicodeEncodeError as e:  # a lone surrogate: this caller's error only
                fail(op, e)
                continue
            (gets if op.kind == Kind.GET else writes).append(op)
        if not (gets or writes):
            return [], atomic
        atomic = atomic and len(writes) > 1
        statements: list[str] = []
        if atomic:
            writes.sort(key=_by_key)  # stable: a key's writes keep their order
            statements.append("START TRANSACTION")
        select = len(statements) if gets else -1
        if gets:
            keys = dict.fromkeys(literals[key] for op in gets for key in op.keys)
            statements.append(
                f"SELECT k, v, version FROM {self._table.kv} WHERE k IN ({', '.join(keys)})"
            )
        first = len(statements)
        statements.extend(self._write(op, literals[op.key]) for op in writes)
        if atomic:
            statements.append("COMMIT")
        done: list[tuple[BatchedOperation, int | None]] = []  # the writes whose statement ran
        index = 0  # of the statement whose result is read
        try:
            await cur.execute(";".join(statements))
            for index in range(len(statements)):
                if index:
                    await cur.nextset()
                if index == select:
                    for k, v, version in await cur.fetchall():
                        found[bytes(k).decode()] = VersionedValue(bytes(v), int(version))
                elif first <= index < first + len(writes):
                    op = writes[index - first]
                    done.append((op, self._written(op, cur.rowcount, cur.lastrowid)))
        except aiomysql.MySQLError as e:
            if self._table.is_connection_lost(e):
                raise
            if index == select:
                for op in gets:
                    fail(op, e)
            if atomic:
                # Whatever failed, nothing of the transaction stays: its writes go again, one
                # statement each (and its reads, if they were not read).
                await cur.execute("ROLLBACK")
                return (gets if index < select else []) + writes, False
            if index == select:
                return writes, False
            written.extend(done)
            fail(writes[len(done)], e)
            return writes[len(done) + 1 :], False
        written.extend(done)
        return [], atomic

    def _write(self, op: BatchedOperation, key: str) -> str:
        """The statement of a write; ``key`` is the key's literal."""
        kv, expected = self._table.kv, op.expected
        if op.kind == Kind.PUT:
            value = _hex(op.value)
            if expected is None:
                # LAST_INSERT_ID(expr) hands the new version back in the OK packet.
                rows = f"({key}, {value}, LAST_INSERT_ID(1))"
                return self._table.upsert(rows, "LAST_INSERT_ID(version + 1)")
            if expected == 0:
                return (
                    f"INSERT INTO {kv} (k, v, version) VALUES ({key}, {value}, 1) "
                    "ON DUPLICATE KEY UPDATE version = version"
                )
            return (
                f"UPDATE {kv} SET v = {value}, version = version + 1 "
                f"WHERE k = {key} AND version = {int(expected)}"
            )
        if expected is None:
            return f"DELETE FROM {kv} WHERE k = {key}"
        return f"DELETE FROM {kv} WHERE k = {key} AND version = {int(expected)}"

    @staticmethod
    def _written(op: BatchedOperation, rowcount: int, lastrowid: Any) -> int | None:
        """The new version written by ``op`` (any number for a delete), or None."""
        expected = op.expected
        if op.kind == Kind.PUT:
            if expected is None:
                return int(lastrowid)
            return expected + 1 if rowcount == 1 else None
        return 0 if rowcount == 1 or expected is None else None

    async def _versions(self, cur: aiomysql.Cursor, conflicts: list[str]) -> dict[str, int]:
        keys = ", ".join(_hex(key.encode()) for key in dict.fromkeys(conflicts))
        await cur.execute(f"SELECT k, version FROM {self._table.kv} WHERE k IN ({keys})")
        return {bytes(k).decode(): int(version) for k, version in await cur.fetchall()}
