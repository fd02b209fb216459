"""The event loop thread's timer slack (see infinitic.transport_pulsar._timer_slack)."""

from __future__ import annotations

import asyncio
import ctypes
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from infinitic.transport_pulsar import PulsarTransport
from infinitic.transport_pulsar._timer_slack import (
    _PR_GET_TIMERSLACK,
    _PR_SET_TIMERSLACK,
    shorten_timer_slack,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")

T = TypeVar("T")


def slack() -> int:
    """The calling thread's timer slack, in nanoseconds."""
    return int(ctypes.CDLL(None).prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0))


def set_slack(nanoseconds: int) -> None:
    assert ctypes.CDLL(None).prctl(_PR_SET_TIMERSLACK, ctypes.c_ulong(nanoseconds), 0, 0, 0) == 0


def in_new_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a thread of its own (the slack is per thread: the test's stays as it was)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]  # type: ignore[no-any-return]


def test_the_slack_is_shortened_never_lengthened() -> None:
    def run() -> tuple[bool, int, bool, int]:
        set_slack(50_000)  # Linux's default (a thread inherits its creator's)
        first = shorten_timer_slack(1000)
        after = slack()
        second = shorten_timer_slack(20_000)  # longer than it is now: left alone
        return first, after, second, slack()

    first, after, second, last = in_new_thread(run)
    assert (first, after) == (True, 1000)
    assert (second, last) == (True, 1000)


def test_a_started_transport_shortens_its_loop_threads_slack(lite_url: str) -> None:
    def run(**consumer: Any) -> int:
        async def main() -> int:
            transport = PulsarTransport.for_pulsar_lite(lite_url, consumer=consumer)
            await transport.start()
            try:
                return slack()
            finally:
                await transport.close()

        return asyncio.run(main())

    def from_default(**consumer: Any) -> int:
        set_slack(50_000)
        return run(**consumer)

    assert in_new_thread(from_default) == 1000
    assert in_new_thread(lambda: from_default(loopTimerSlackNs=5000)) == 5000
    assert in_new_thread(lambda: from_default(loopTimerSlackNs=None)) == 50_000
