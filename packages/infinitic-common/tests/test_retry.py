from __future__ import annotations

import pytest

from infinitic.services import ExponentialBackoff, NoRetry


def test_no_retry_by_default() -> None:
    assert NoRetry().delay(0, ValueError()) is None


def test_exponential_backoff_grows_and_stops() -> None:
    policy = ExponentialBackoff(
        minimum_seconds=1, maximum_seconds=10, coefficient=2, random_factor=0, maximum_retries=5
    )
    assert [policy.delay(i, ValueError()) for i in range(6)] == [1, 2, 4, 8, 10, None]


def test_random_factor_spreads_delays_within_bounds() -> None:
    policy = ExponentialBackoff(minimum_seconds=10, maximum_seconds=100, random_factor=0.5)
    delays = {policy.delay(0, ValueError()) for _ in range(200)}
    assert len(delays) > 100
    assert all(d is not None and 5 <= d <= 15 for d in delays)


def test_ignored_exceptions_are_not_retried() -> None:
    policy = ExponentialBackoff(ignored_exceptions=[LookupError, "PermissionError"])
    assert policy.delay(0, KeyError()) is None  # a subclass of an ignored class
    assert policy.delay(0, PermissionError()) is None
    assert policy.delay(0, ValueError()) is not None


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="coefficient"):
        ExponentialBackoff(coefficient=0.5)
    with pytest.raises(ValueError, match="minimum_seconds"):
        ExponentialBackoff(minimum_seconds=5, maximum_seconds=1)
