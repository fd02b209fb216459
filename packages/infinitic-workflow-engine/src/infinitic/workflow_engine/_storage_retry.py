"""Retrying storage operations through a storage outage.

A storage backend that cannot be reached raises :class:`~infinitic.exceptions.StorageError`.
Engines retry such an operation with exponential backoff for a bounded time (so a restart or a
failover of the database does not burn the message's redeliveries in a second), then let the
error escape: the transport delivers the message again later, and dead-letters it after its
redeliveries if the storage never comes back.

Two storage errors are never retried here:

- :class:`~infinitic.exceptions.VersionConflictError`: the engine's compare-and-set loop handles
  it (re-read, process again). After a lost connection a backend retries a write once, so a
  write whose reply was lost may come back as a conflict with its own write; processing the
  message again on the fresh state is safe because every handler is idempotent.
- :class:`~infinitic.exceptions.CorruptedValueError`: a stored value that cannot be decoded will
  not heal by waiting; it is raised at once (naming the key), so the message reaches the
  dead-letter topic after its redeliveries while the other workflows keep flowing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from infinitic.exceptions import (
    CorruptedValueError,
    StorageError,
    ValueTooLargeError,
    VersionConflictError,
)

logger = logging.getLogger("infinitic.workflow_engine")

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class StorageRetryPolicy:
    """How long and how often a failing storage operation is tried again.

    Attributes:
        initial_delay: seconds before the first retry.
        max_delay: the longest pause between two attempts.
        multiplier: growth of the pause after each failed attempt.
        max_elapsed: seconds after the first failure beyond which the error is raised (the
            transport then redelivers the message later). 0 disables retrying.
        jitter: fraction of each pause drawn at random, so workers do not retry in lockstep.
        sleep: the coroutine used to wait (tests replace it).
        clock: a monotonic clock in seconds (tests replace it).
    """

    initial_delay: float = 0.05
    max_delay: float = 5.0
    multiplier: float = 2.0
    max_elapsed: float = 45.0
    jitter: float = 0.2
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    def __post_init__(self) -> None:
        if self.initial_delay <= 0 or self.max_delay < self.initial_delay:
            raise ValueError(
                f"need 0 < initial_delay <= max_delay, got {self.initial_delay} and "
                f"{self.max_delay}"
            )
        if self.multiplier < 1 or self.max_elapsed < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("need multiplier >= 1, max_elapsed >= 0 and 0 <= jitter <= 1")

    def delays(self) -> list[float]:
        """The pauses between attempts without jitter (for documentation and tests)."""
        out: list[float] = []
        delay, total = self.initial_delay, 0.0
        while total + delay <= self.max_elapsed:
            out.append(delay)
            total += delay
            delay = min(self.max_delay, delay * self.multiplier)
        return out


DEFAULT_STORAGE_RETRY = StorageRetryPolicy()


def is_retryable(error: BaseException) -> bool:
    """Whether waiting may help: a StorageError that is neither a conflict, corruption, nor a
    value over the backend's limit."""
    return isinstance(error, StorageError) and not isinstance(
        error, VersionConflictError | CorruptedValueError | ValueTooLargeError
    )


async def with_storage_retry(
    operation: Callable[P, Awaitable[T]],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Await ``operation(*args, **kwargs)``, retrying it with :data:`DEFAULT_STORAGE_RETRY`.

    See :func:`retry_storage` for what is retried and what is raised.
    """
    return await retry_storage(DEFAULT_STORAGE_RETRY, operation, *args, **kwargs)


async def retry_storage(
    policy: StorageRetryPolicy,
    operation: Callable[P, Awaitable[T]],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Await ``operation(*args, **kwargs)``, retrying it while the storage is unavailable.

    The operation must be safe to run again (reads, and compare-and-set writes: a write that
    succeeded although its reply was lost is then reported as a VersionConflictError).

    Raises:
        StorageError: still failing after ``policy.max_elapsed`` seconds.
        VersionConflictError: at once (the caller re-reads and processes again).
        CorruptedValueError: at once (waiting does not repair a stored value).
        ValueTooLargeError: at once (waiting does not shrink a value).
    """
    delay = policy.initial_delay
    started: float | None = None
    attempt = 0
    while True:
        try:
            return await operation(*args, **kwargs)
        except StorageError as error:
            if not is_retryable(error):
                raise
            now = policy.clock()
            if started is None:
                started = now
            attempt += 1
            pause = delay * (1 - policy.jitter * random.random())
            if now - started + pause > policy.max_elapsed:
                logger.warning(
                    "storage still failing after %d attempts in %.1fs, giving up (the message "
                    "will be delivered again): %s",
                    attempt,
                    now - started,
                    error,
                )
                raise
            log = logger.warning if attempt == 1 else logger.debug
            log("storage failed (attempt %d), retrying in %.2fs: %s", attempt, pause, error)
            await policy.sleep(pause)
            delay = min(policy.max_delay, delay * policy.multiplier)
