"""A short timer slack for the event loop's thread, so that a look at an empty consumer costs
microseconds, not a sleep.

The C++ client's ``receive_async`` (and ``receive`` with a zero timeout) first tries to take a
prefetched message with a zero-timeout wait on a condition variable. Linux lets a timed wait of a
thread end up to its *timer slack* late (50 µs by default), and a deadline of "now" is already
late: each look at an empty queue slept 50-60 µs with the event loop's thread blocked (measured:
``receive_async`` on an empty queue 57 µs with the default slack, 9 µs with 1 µs of slack;
``receive`` with a zero timeout 70 µs and 27 µs). A worker looks at an empty queue after almost
every message when it is not saturated, so the slack was about a millisecond of each bank wire's
latency in ``make bench``'s sequential phase.

The slack is a property of one thread (``prctl(PR_SET_TIMERSLACK)``); it only makes its timed
waits end closer to their deadlines (asyncio's timers included). Elsewhere than Linux nothing is
changed.
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger("infinitic.transport_pulsar")

_PR_SET_TIMERSLACK = 29
_PR_GET_TIMERSLACK = 30


def shorten_timer_slack(nanoseconds: int) -> bool:
    """Set the calling thread's timer slack to ``nanoseconds`` unless it is shorter already.

    Returns:
        True when the thread's slack is now at most ``nanoseconds``; False where it cannot be
        set (not Linux, no ``prctl``), which costs only the sleeps this avoids.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    prctl.restype = ctypes.c_int
    current = prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)
    if 0 <= current <= nanoseconds:
        return True
    if prctl(_PR_SET_TIMERSLACK, ctypes.c_ulong(nanoseconds), 0, 0, 0) != 0:
        logger.debug("cannot set the timer slack: errno %d", ctypes.get_errno())
        return False
    return True
