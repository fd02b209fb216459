"""The admin set-up against a fake Pulsar admin REST API (no real Pulsar needed)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from infinitic.transport_pulsar import PulsarAdminError, PulsarSettings
from infinitic.transport_pulsar._admin import PulsarAdmin


class FakePulsarAdmin:
    """Records requests; answers from ``routes`` ((method, path) -> (status, body)), else 204."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any, str | None]] = []
        self.routes: dict[tuple[str, str], tuple[int, Any]] = {
            ("GET", "/admin/v2/clusters"): (200, ["standalone"]),
            ("GET", "/admin/v2/tenants/acme"): (404, {"reason": "Tenant does not exist"}),
        }
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                fake.requests.append(
                    (self.command, self.path, body, self.headers.get("Authorization"))
                )
                status, answer = fake.routes.get((self.command, self.path), (204, None))
                payload = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def calls(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _, _ in self.requests]


@pytest.fixture
def fake() -> Iterator[FakePulsarAdmin]:
    server = FakePulsarAdmin()
    try:
        yield server
    finally:
        server.close()


def admin_for(fake: FakePulsarAdmin, **settings: Any) -> PulsarAdmin:
    return PulsarAdmin(
        PulsarSettings(web_service_url=fake.url, tenant="acme", namespace="prod", **settings)
    )


async def test_creates_tenant_namespace_and_policies_once(fake: FakePulsarAdmin) -> None:
    admin = admin_for(fake, authentication={"token": "tok"})
    await admin.ensure_namespace()
    await admin.ensure_namespace()
    ns = "/admin/v2/namespaces/acme/prod"
    assert fake.calls() == [
        ("GET", "/admin/v2/tenants/acme"),
        ("GET", "/admin/v2/clusters"),
        ("PUT", "/admin/v2/tenants/acme"),
        ("PUT", ns),
        ("POST", f"{ns}/retention"),
        ("POST", f"{ns}/messageTTL"),
        ("POST", f"{ns}/deduplication"),
        ("POST", f"{ns}/delayedDelivery"),
    ]
    bodies = {(m, p): b for m, p, b, _ in fake.requests}
    assert bodies[("PUT", "/admin/v2/tenants/acme")] == {
        "adminRoles": [],
        "allowedClusters": ["standalone"],
    }
    assert bodies[("POST", f"{ns}/retention")] == {
        "retentionTimeInMinutes": 7 * 24 * 60,
        "retentionSizeInMB": 1024,
    }
    assert bodies[("POST", f"{ns}/messageTTL")] == 14 * 24 * 3600
    assert bodies[("POST", f"{ns}/deduplication")] is True
    assert bodies[("POST", f"{ns}/delayedDelivery")] == {"active": True, "tickTime": 1000}
    assert {auth for _, _, _, auth in fake.requests} == {"Bearer tok"}


async def test_existing_namespace_keeps_its_policies_unless_forced(fake: FakePulsarAdmin) -> None:
    fake.routes[("GET", "/admin/v2/tenants/acme")] = (200, {"allowedClusters": ["c"]})
    fake.routes[("PUT", "/admin/v2/namespaces/acme/prod")] = (409, {"reason": "exists"})
    await admin_for(fake).ensure_namespace()
    assert fake.calls() == [
        ("GET", "/admin/v2/tenants/acme"),
        ("PUT", "/admin/v2/namespaces/acme/prod"),
    ]
    fake.requests.clear()
    await admin_for(fake, policies={"forceInfiniticPolicies": True}).ensure_namespace()
    assert ("POST", "/admin/v2/namespaces/acme/prod/retention") in fake.calls()


async def test_creates_topics_partitioned_or_not_once(fake: FakePulsarAdmin) -> None:
    admin = admin_for(fake, policies={"topicPartitions": 3})
    await admin.ensure_topic("workflow-engine:Bank")
    await admin.ensure_topic("workflow-engine:Bank")
    puts = [r for r in fake.requests if r[1].startswith("/admin/v2/persistent/")]
    assert [(m, p, b) for m, p, b, _ in puts] == [
        ("PUT", "/admin/v2/persistent/acme/prod/workflow-engine%3ABank/partitions", 3)
    ]
    fake.requests.clear()
    fake.routes[("PUT", "/admin/v2/persistent/acme/prod/t")] = (409, {"reason": "exists"})
    await admin_for(fake).ensure_topic("t")
    assert ("PUT", "/admin/v2/persistent/acme/prod/t") in fake.calls()


async def test_refusal_and_unreachable_api_raise(fake: FakePulsarAdmin) -> None:
    fake.routes[("PUT", "/admin/v2/tenants/acme")] = (403, {"reason": "not a superuser"})
    with pytest.raises(PulsarAdminError, match="403"):
        await admin_for(fake).ensure_namespace()
    admin = PulsarAdmin(PulsarSettings(web_service_url="http://127.0.0.1:9"), timeout=2)
    with pytest.raises(PulsarAdminError, match="cannot reach"):
        await admin.ensure_namespace()


async def test_backlogs_come_from_the_topic_stats(fake: FakePulsarAdmin) -> None:
    from infinitic.transport_pulsar import PulsarTransport

    stats = "/admin/v2/persistent/acme/prod/workflow-cmd%3AW/stats"
    fake.routes[("GET", stats)] = (
        200,
        {"subscriptions": {"infinitic": {"msgBacklog": 7}, "other": {"msgBacklog": 1}}},
    )
    transport = PulsarTransport(
        PulsarSettings(web_service_url=fake.url, tenant="acme", namespace="prod")
    )
    assert await transport.backlog("workflow-cmd:W", "infinitic") == 7
    assert await transport.backlog("workflow-cmd:W", "nobody") is None
    assert ("GET", stats) in fake.calls()
    fake.routes[("GET", stats)] = (404, {"reason": "Topic not found"})
    assert await transport.backlog("workflow-cmd:W", "infinitic") is None
    fake.routes[("GET", stats)] = (200, {"subscriptions": {"infinitic": {"msgBacklog": "7"}}})
    assert await transport.backlog("workflow-cmd:W", "infinitic") is None  # not a count
    partitioned = PulsarTransport(
        PulsarSettings(
            web_service_url=fake.url,
            tenant="acme",
            namespace="prod",
            policies={"topic_partitions": 3},
        )
    )
    fake.routes[("GET", stats.replace("/stats", "/partitioned-stats"))] = (
        200,
        {"subscriptions": {"infinitic": {"msgBacklog": 12}}},
    )
    assert await partitioned.backlog("workflow-cmd:W", "infinitic") == 12


async def test_no_backlog_without_an_admin_api() -> None:
    from infinitic.transport_pulsar import PulsarTransport

    lite = PulsarTransport.for_pulsar_lite("pulsar://127.0.0.1:6650")
    assert await lite.backlog("workflow-cmd:W", "infinitic") is None
    unreachable = PulsarTransport(PulsarSettings(web_service_url="http://127.0.0.1:9"))
    assert await unreachable.backlog("workflow-cmd:W", "infinitic") is None
