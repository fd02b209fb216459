"""Retry policies for tasks."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field


class RetryPolicy(ABC):
    """Decides whether, and after how long, a failed task is tried again."""

    @abstractmethod
    def delay(self, retry_index: int, error: BaseException) -> float | None:
        """Seconds to wait before retry number ``retry_index + 1``, or None for no more tries.

        Args:
            retry_index: how many retries were already made (0 after the first attempt).
            error: the exception raised by the last attempt.
        """


@dataclass(frozen=True)
class ExponentialBackoff(RetryPolicy):
    """Exponential backoff: ``min(maximum_seconds, minimum_seconds * coefficient**n)``, spread by
    ``random_factor`` (0.5 means +/- 50 %), at most ``maximum_retries`` retries.

    Exceptions whose class (or a base class) is listed in ``ignored_exceptions`` are not
    retried. Names are matched against class names and qualified names.
    """

    minimum_seconds: float = 1.0
    maximum_seconds: float = 1000.0
    coefficient: float = 2.0
    random_factor: float = 0.5
    maximum_retries: int = 11
    ignored_exceptions: Sequence[type[BaseException] | str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.minimum_seconds < 0 or self.maximum_seconds < self.minimum_seconds:
            raise ValueError(
                "ExponentialBackoff needs 0 <= minimum_seconds <= maximum_seconds, got "
                f"{self.minimum_seconds} and {self.maximum_seconds}"
            )
        if self.coefficient < 1:
            raise ValueError(f"ExponentialBackoff.coefficient must be >= 1, got {self.coefficient}")
        if not 0 <= self.random_factor <= 1:
            raise ValueError(
                f"ExponentialBackoff.random_factor must be in [0, 1], got {self.random_factor}"
            )
        if self.maximum_retries < 0:
            raise ValueError(
                f"ExponentialBackoff.maximum_retries must be >= 0, got {self.maximum_retries}"
            )

    def _ignored(self, error: BaseException) -> bool:
        for cls in type(error).__mro__:
            for ignored in self.ignored_exceptions:
                if isinstance(ignored, str):
                    if ignored in (
                        cls.__name__,
                        cls.__qualname__,
                        f"{cls.__module__}.{cls.__qualname__}",
                    ):
                        return True
                elif cls is ignored:
                    return True
        return False

    def delay(self, retry_index: int, error: BaseException) -> float | None:
        if retry_index >= self.maximum_retries or self._ignored(error):
            return None
        base = min(self.maximum_seconds, self.minimum_seconds * self.coefficient**retry_index)
        spread = base * self.random_factor * (2 * random.random() - 1)
        return max(0.0, min(self.maximum_seconds, base + spread))


class NoRetry(RetryPolicy):
    """Never retry (the default)."""

    def delay(self, retry_index: int, error: BaseException) -> float | None:
        return None
