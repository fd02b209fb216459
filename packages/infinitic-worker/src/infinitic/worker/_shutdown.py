"""How a worker stops: consumers closed, in-flight messages given a grace period (what still
runs after it is abandoned and delivered again), and the signals that start and hurry it."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from infinitic.transport import Consumer

logger = logging.getLogger("infinitic.worker")

PROGRESS_EVERY = 5.0  # seconds between two logs of what a stopping worker waits for
ABANDON_WAIT = 5.0  # seconds for consumers to close once their handlers are canceled


def describe(counts: dict[str, int]) -> str:
    """``component: count, ...`` of what is in flight, or ``none``."""
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"


async def drain(
    name: str,
    consumers: Sequence[Consumer],
    handler_tasks: set[asyncio.Task[Any]],
    in_flight: Callable[[], dict[str, int]],
    abandon: asyncio.Event,
    grace_period: float,
) -> bool:
    """Close ``consumers``, waiting for their handlers up to ``grace_period`` seconds (or until
    ``abandon`` is set), logging what runs every few seconds; then cancel the handlers still
    running (their messages were never acknowledged). True when every handler finished."""
    if not consumers:
        return True
    loop = asyncio.get_running_loop()
    closing = asyncio.ensure_future(
        asyncio.gather(*(c.close() for c in consumers), return_exceptions=True)
    )
    abandoned = asyncio.ensure_future(abandon.wait())
    waiters: set[asyncio.Future[Any]] = {closing, abandoned}
    deadline = loop.time() + grace_period
    try:
        while not closing.done():
            left = deadline - loop.time()
            if left <= 0 or abandon.is_set():
                break
            counts = in_flight()
            if counts:
                logger.info(
                    "worker %s stopping: %d in-flight (%s); waiting %.0f s more",
                    name,
                    sum(counts.values()),
                    describe(counts),
                    left,
                )
            await asyncio.wait(
                waiters, timeout=min(PROGRESS_EVERY, left), return_when=asyncio.FIRST_COMPLETED
            )
        if closing.done():
            return True
        counts = in_flight()
        logger.warning(
            "worker %s: abandoning %d in-flight (%s) %s; the broker delivers them again",
            name,
            sum(counts.values()),
            describe(counts),
            "now" if abandon.is_set() else f"after {grace_period:g} s",
        )
        for task in list(handler_tasks):
            task.cancel()
        done, _ = await asyncio.wait({closing}, timeout=ABANDON_WAIT)
        if not done:
            logger.warning("worker %s: consumers not closed in time", name)
            closing.cancel()
        return False
    finally:
        abandoned.cancel()


async def serve_until_signal(
    name: str,
    grace_period: float,
    start: Callable[[], Awaitable[None]],
    close: Callable[[], Awaitable[None]],
    abandon: Callable[[], None],
) -> None:
    """``start``, then run until SIGINT or SIGTERM (or cancellation), then ``close``; a second
    signal calls ``abandon``. Signals are caught only on the main thread."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        if len(received) == 1:
            logger.info(
                "worker %s: %s received: stopping (in-flight messages get %g s; a second "
                "signal stops at once)",
                name,
                sig.name,
                grace_period,
            )
            stop.set()
        else:
            logger.warning("worker %s: %s received again: stopping now", name, sig.name)
            abandon()

    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            handled.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    try:
        await start()
        await stop.wait()
    finally:
        try:
            await close()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
