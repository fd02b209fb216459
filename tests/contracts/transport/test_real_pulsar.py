"""What only a real Apache Pulsar can show: the admin set-up, native Key_Shared routing and
native delayed delivery. Skipped unless PULSAR_URL (and, for the admin test, PULSAR_ADMIN_URL)
are set; unreachable brokers are skipped locally and fail in CI.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest

from infinitic.transport import ConsumerSettings, SubscriptionType, TransportMessage

pytestmark = pytest.mark.real_pulsar


def _topic() -> str:
    return f"workflow-engine:Real{uuid.uuid4().hex[:10]}"


async def test_admin_creates_tenant_namespace_policies_and_topics(
    real_pulsar: dict[str, Any],
) -> None:
    from infinitic.transport_pulsar import PulsarPolicies, PulsarSettings, PulsarTransport

    if not os.environ.get("PULSAR_ADMIN_URL"):
        pytest.skip("set PULSAR_ADMIN_URL to test the admin set-up")
    settings = PulsarSettings(**real_pulsar, policies=PulsarPolicies(topic_partitions=2))
    topic = _topic()
    async with PulsarTransport(settings) as transport:
        await transport.publish(topic, b"x")
        assert transport._admin is not None
        admin = transport._admin
        ns = f"/admin/v2/namespaces/{settings.tenant}/{settings.namespace}"
        status, retention = await admin.request("GET", f"{ns}/retention")
        assert status == 200
        assert retention["retentionTimeInMinutes"] == settings.policies.retention_time_in_minutes
        status, partitioned = await admin.request(
            "GET", f"/admin/v2/persistent/{settings.tenant}/{settings.namespace}/partitioned"
        )
        assert status == 200
        assert transport.physical_topic(topic) in partitioned


async def test_native_key_shared_routes_each_key_to_one_worker_in_order(
    real_pulsar: dict[str, Any],
) -> None:
    from infinitic.transport_pulsar import PulsarSettings, PulsarTransport

    settings = PulsarSettings(**real_pulsar)
    topic = _topic()
    seen: dict[str, dict[str, list[int]]] = {"a": defaultdict(list), "b": defaultdict(list)}

    def handler_for(name: str):  # type: ignore[no-untyped-def]
        async def handler(message: TransportMessage) -> None:
            assert message.key is not None
            seen[name][message.key].append(int(message.data))

        return handler

    a, b = PulsarTransport(settings), PulsarTransport(settings)
    try:
        key_shared = ConsumerSettings(type=SubscriptionType.KEY_SHARED, concurrency=4)
        await a.subscribe(topic, "engine", handler_for("a"), key_shared)
        await b.subscribe(topic, "engine", handler_for("b"), key_shared)
        for i in range(20):
            for k in range(10):
                await a.publish(topic, str(i).encode(), key=f"k{k}")
        async with asyncio.timeout(60):
            while sum(len(v) for w in seen.values() for v in w.values()) < 200:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert not set(seen["a"]) & set(seen["b"])
        for worker in seen.values():
            for order in worker.values():
                assert order == list(range(20))
    finally:
        await a.close()
        await b.close()


async def test_broker_holds_delayed_messages_natively(real_pulsar: dict[str, Any]) -> None:
    import pulsar
    import pulsar.asyncio as pa

    from infinitic.transport_pulsar import PulsarSettings, PulsarTransport

    settings = PulsarSettings(**real_pulsar)
    topic = _topic()
    async with PulsarTransport(settings) as transport:
        client = pa.Client(settings.broker_service_url)
        try:
            raw = await client.subscribe(
                transport.physical_topic(topic),
                "raw",
                consumer_type=pulsar.ConsumerType.Shared,
                initial_position=pulsar.InitialPosition.Earliest,
            )
            due = time.time() + 2
            await transport.publish(topic, b"later", deliver_at=due)
            message = await raw.receive()
            assert time.time() >= due - 0.05  # the broker's clock, not the consumer, held it
            assert message.data() == b"later"
            await raw.acknowledge(message)
        finally:
            await client.close()
