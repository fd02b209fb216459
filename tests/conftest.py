"""Shared fixtures of the cross-package tests."""

from __future__ import annotations

import os

import pytest

CACHE_SIZES = (
    [1000, 0]
    if os.environ.get("INFINITIC_TEST_CACHE", "both") == "both"
    else [int(os.environ["INFINITIC_TEST_CACHE"])]
)


@pytest.fixture(params=CACHE_SIZES, ids=lambda n: "cache" if n else "nocache")
def workflow_cache_size(request: pytest.FixtureRequest) -> int:
    """Every end-to-end scenario runs with the live-instance cache on and off."""
    return int(request.param)
