"""Fixtures of the transport contract suite.

``transport`` runs every contract test against each implementation: the in-memory transport, and
the Pulsar transport on a pulsar-lite broker started once per session (marker ``pulsar``). Set
``PULSAR_LITE_URL`` to use an already running pulsar-lite broker instead. When the broker cannot
be started, its tests are skipped locally and fail when the ``CI`` environment variable is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from infinitic.transport import InMemoryTransport, Transport


def unavailable(reason: str) -> None:
    """Skip the test locally; fail it in CI, where every service must be there."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pulsar_lite_url() -> Iterator[str]:
    """The service URL of a pulsar-lite broker shared by the session."""
    url = os.environ.get("PULSAR_LITE_URL")
    if url:
        yield url
        return
    try:
        from infinitic.transport_pulsar import EmbeddedPulsarLite

        broker = EmbeddedPulsarLite()
        broker.start_blocking()
    except (ImportError, OSError, RuntimeError) as e:
        unavailable(f"cannot start an embedded pulsar-lite broker: {e}")
        return
    try:
        yield broker.service_url
    finally:
        broker.stop_blocking()


@pytest.fixture(params=["in-memory", pytest.param("pulsar-lite", marks=pytest.mark.pulsar)])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    """A fresh, started transport of each implementation."""
    t: Transport
    if request.param == "in-memory":
        t = InMemoryTransport()
    else:
        from infinitic.transport_pulsar import PulsarTransport

        url = request.getfixturevalue("pulsar_lite_url")
        t = PulsarTransport.for_pulsar_lite(url, namespace=f"contract-{uuid.uuid4().hex[:8]}")
    await t.start()
    try:
        yield t
    finally:
        await t.close()


@pytest.fixture
def topic() -> str:
    """A topic name used by no other test, shaped like Infinitic's names."""
    return f"workflow-engine:Contract{uuid.uuid4().hex[:10]}"
