"""Fixtures of the Pulsar transport's unit tests: one embedded pulsar-lite broker per session.

When the broker cannot start, its tests are skipped locally and fail when ``CI`` is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from infinitic.transport_pulsar import PulsarTransport


@pytest.fixture(scope="session")
def lite_url() -> Iterator[str]:
    """The service URL of a pulsar-lite broker shared by the session."""
    try:
        from infinitic.transport_pulsar import EmbeddedPulsarLite

        broker = EmbeddedPulsarLite()
        broker.start_blocking()
    except (ImportError, OSError, RuntimeError) as e:
        if os.environ.get("CI"):
            pytest.fail(f"cannot start an embedded pulsar-lite broker: {e}")
        pytest.skip(f"cannot start an embedded pulsar-lite broker: {e}")
    try:
        yield broker.service_url
    finally:
        broker.stop_blocking()


@pytest.fixture
def namespace() -> str:
    """A Pulsar namespace used by no other test (pulsar-lite creates it on first use)."""
    return f"unit-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_transport(lite_url: str, namespace: str) -> Callable[..., PulsarTransport]:
    """Build transports on the session's broker, in the test's namespace."""

    def make(**settings: Any) -> PulsarTransport:
        return PulsarTransport.for_pulsar_lite(lite_url, namespace=namespace, **settings)

    return make


@pytest.fixture
async def transport(
    make_transport: Callable[..., PulsarTransport],
) -> AsyncIterator[PulsarTransport]:
    """A started transport with default settings."""
    async with make_transport() as t:
        yield t
