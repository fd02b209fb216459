"""Shared fixtures of the cross-package tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The chaos tool's process cluster and wire runs (tools/chaos_*.py), shared with the crash and
# chaos tests: tools never import from tests, so the tests import the tools by path.
TOOLS = str(Path(__file__).resolve().parents[1] / "tools")
if TOOLS not in sys.path:
    sys.path.append(TOOLS)

CACHE_SIZES = (
    [1000, 0]
    if os.environ.get("INFINITIC_TEST_CACHE", "both") == "both"
    else [int(os.environ["INFINITIC_TEST_CACHE"])]
)


@pytest.fixture(params=CACHE_SIZES, ids=lambda n: "cache" if n else "nocache")
def workflow_cache_size(request: pytest.FixtureRequest) -> int:
    """Every end-to-end scenario runs with the live-instance cache on and off."""
    return int(request.param)


@pytest.fixture(scope="session")
def pulsar_lite_url() -> Iterator[str]:
    """The service URL of one pulsar-lite broker shared by every test of the session
    (``PULSAR_LITE_URL`` to use a running one). Unavailable: skip locally, fail under CI."""
    url = os.environ.get("PULSAR_LITE_URL")
    if url:
        yield url
        return
    try:
        from infinitic.transport_pulsar import EmbeddedPulsarLite

        broker = EmbeddedPulsarLite()
        broker.start_blocking()
    except (ImportError, OSError, RuntimeError) as e:
        reason = f"cannot start an embedded pulsar-lite broker: {e}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield broker.service_url
    finally:
        broker.stop_blocking()
