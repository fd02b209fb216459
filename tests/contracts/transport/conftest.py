"""Fixtures of the transport contract suite.

``transport`` runs every contract test against each implementation: the in-memory transport, and
the Pulsar transport on a pulsar-lite broker started once per session (marker ``pulsar``). Set
``PULSAR_LITE_URL`` to use an already running pulsar-lite broker instead. When ``PULSAR_URL`` (and
optionally ``PULSAR_ADMIN_URL``) name a real Apache Pulsar, the suite runs against it too (marker
``real_pulsar``). When a broker cannot be reached, its tests are skipped locally and fail when the
``CI`` environment variable is set.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import pytest

from infinitic.transport import InMemoryTransport, Transport


def unavailable(reason: str) -> None:
    """Skip the test locally; fail it in CI, where every service must be there."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def real_pulsar_settings() -> dict[str, Any]:
    """Settings for the real Apache Pulsar named by PULSAR_URL / PULSAR_ADMIN_URL (checked)."""
    url = os.environ.get("PULSAR_URL")
    if not url:
        pytest.skip("set PULSAR_URL (and PULSAR_ADMIN_URL) to run the real Apache Pulsar tests")
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "localhost", parsed.port or 6650), 3):
            pass
    except OSError as e:
        unavailable(f"Apache Pulsar at {url} is unreachable: {e}")
    admin = os.environ.get("PULSAR_ADMIN_URL")
    settings: dict[str, Any] = {
        "broker_service_url": url,
        "broker_flavor": "pulsar",
        # With an admin URL, each test gets a namespace of its own; without, use an existing one.
        "tenant": os.environ.get("PULSAR_TENANT", "infinitic-tests" if admin else "public"),
        "namespace": f"contract-{uuid.uuid4().hex[:8]}"
        if admin
        else os.environ.get("PULSAR_NAMESPACE", "default"),
    }
    if admin:
        settings["web_service_url"] = admin
    if os.environ.get("PULSAR_TOKEN"):
        settings["authentication"] = {"token": os.environ["PULSAR_TOKEN"]}
    return settings


@pytest.fixture
def real_pulsar() -> dict[str, Any]:
    """PulsarSettings keywords for the real Apache Pulsar of PULSAR_URL (skips when unset)."""
    return real_pulsar_settings()


_IMPLEMENTATIONS = ["in-memory", pytest.param("pulsar-lite", marks=pytest.mark.pulsar)]
if os.environ.get("PULSAR_URL"):
    _IMPLEMENTATIONS.append(pytest.param("real-pulsar", marks=pytest.mark.real_pulsar))


@pytest.fixture(params=_IMPLEMENTATIONS)
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    """A fresh, started transport of each implementation."""
    t: Transport
    if request.param == "in-memory":
        t = InMemoryTransport()
    else:
        from infinitic.transport_pulsar import PulsarSettings, PulsarTransport

        if request.param == "real-pulsar":
            t = PulsarTransport(PulsarSettings(**real_pulsar_settings()))
        else:
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
