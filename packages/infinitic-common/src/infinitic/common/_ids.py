"""Identifiers: sortable unique ids and deterministic command ids."""

from __future__ import annotations

import hashlib
import os
import threading
import time

_sha256 = hashlib.sha256
_lock = threading.Lock()
_last_ms = 0
_counter = 0
# Random bytes drawn from the OS in blocks (one system call per 512 ids); a forked child starts
# with an empty pool, so it never repeats its parent's bytes.
_pool = bytearray()
_POOL_BYTES = 4096


def _forget_pool() -> None:
    _pool.clear()


os.register_at_fork(after_in_child=_forget_pool)


def new_id() -> str:
    """Return a new unique id whose string order follows creation time (UUIDv7 layout).

    Within one process, ids created in the same millisecond keep their creation order thanks
    to a counter in the random bits.
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter >= 1 << 12:  # counter space exhausted: borrow the next millisecond
                ms += 1
                _counter = 0
        else:
            _counter = 0
        _last_ms = ms
        counter = _counter
        if len(_pool) < 8:
            _pool.extend(os.urandom(_POOL_BYTES))
        rand = int.from_bytes(_pool[-8:], "big") & ((1 << 62) - 1)
        del _pool[-8:]
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    h = value.to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def deterministic_id(*parts: str | int) -> str:
    """Return an id derived only from ``parts``: the same parts always give the same id."""
    h = _sha256("\x1f".join([p if type(p) is str else str(p) for p in parts]).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{h[16:20]}-{h[20:32]}"


def command_id(workflow_id: str, method_run_id: str, position: int) -> str:
    """Return the id of the command at ``position`` of a workflow method run.

    Ids are stable across replays and retries, which makes every handler downstream idempotent.
    """
    return deterministic_id("command", workflow_id, method_run_id, position)
