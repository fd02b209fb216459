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
_prefix = ""  # "<ms hex 8>-<ms hex 4>-7" of _last_ms
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
    global _last_ms, _counter, _prefix
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
        if ms != _last_ms:  # the millisecond's part, formatted once per millisecond
            h = f"{ms:012x}"
            _prefix = f"{h[:8]}-{h[8:]}-7"
            _last_ms = ms
        counter = _counter
        prefix = _prefix
        if len(_pool) < 8:
            _pool.extend(os.urandom(_POOL_BYTES))
        rand = _pool[-8:]
        del _pool[-8:]
    rand[0] = 0x80 | (rand[0] & 0x3F)  # the variant (0b10) over 62 random bits
    r = rand.hex()
    return f"{prefix}{counter:03x}-{r[:4]}-{r[4:]}"


def deterministic_id(*parts: str | int) -> str:
    """Return an id derived only from ``parts``: the same parts always give the same id."""
    h = _sha256("\x1f".join(map(str, parts)).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{h[16:20]}-{h[20:32]}"


def command_id(workflow_id: str, method_run_id: str, position: int) -> str:
    """Return the id of the command at ``position`` of a workflow method run.

    Ids are stable across replays and retries, which makes every handler downstream idempotent.
    """
    return deterministic_id("command", workflow_id, method_run_id, position)
