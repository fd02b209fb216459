"""Giving memory back to the system after large messages.

A large message (up to the broker's limit, or several times it when chunked) is copied a few
times on its way: the client's buffers, its bytes in Python, a republished copy. glibc serves
such blocks from its heap once its dynamic mmap threshold has grown past their size, and keeps
the freed memory for later: a worker that met a few 10 MB messages stayed at a gigabyte of RSS
(the fuzz run of ``make fuzz``). Half a second after a large message is done, when no other
trim is pending, the process asks glibc to return its free memory (``malloc_trim``); elsewhere
than glibc this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from typing import Any

logger = logging.getLogger("infinitic.transport_pulsar")

#: A message at least this large is followed by a trim.
LARGE_MESSAGE_BYTES = 1024 * 1024
#: How long after a large message the trim runs (trims after a burst are merged).
TRIM_DELAY_SECONDS = 0.5


def _load_trim() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc.malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_malloc_trim = _load_trim()
# The event loop a trim is pending on (None: none pending). A loop closed before its trim ran
# (tests open one per test) leaves it set: a trim is then due on the current loop.
_pending_on: asyncio.AbstractEventLoop | None = None


def release_after(size: int) -> None:
    """Note that a message of ``size`` bytes is done: after a large one, trim soon."""
    global _pending_on
    if size < LARGE_MESSAGE_BYTES or _malloc_trim is None:
        return
    loop = asyncio.get_running_loop()
    if _pending_on is loop:
        return
    _pending_on = loop
    loop.call_later(TRIM_DELAY_SECONDS, _trim)


def _trim() -> None:
    global _pending_on
    _pending_on = None
    try:
        _malloc_trim(0)
    except Exception as e:  # never let housekeeping break a consumer
        logger.debug("malloc_trim failed: %s", e)
