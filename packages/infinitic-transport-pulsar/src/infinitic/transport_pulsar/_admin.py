"""Set-up of tenants, namespaces and topics through Pulsar's admin REST API (real Pulsar only).

Uses :mod:`urllib` in a worker thread: no extra dependency and the event loop never blocks.
Every creation is idempotent: "409 Conflict" (already exists) counts as success.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from infinitic.transport_pulsar._errors import PulsarAdminError
from infinitic.transport_pulsar._settings import PulsarSettings

logger = logging.getLogger("infinitic.transport_pulsar")


class PulsarAdmin:
    """Creates the tenant, the namespace (with its policies) and the topics of a transport.

    Args:
        settings: the transport settings; ``web_service_url`` must be set.
        timeout: seconds allowed for each HTTP request.
    """

    def __init__(self, settings: PulsarSettings, *, timeout: float = 30.0) -> None:
        if settings.web_service_url is None:
            raise ValueError("PulsarAdmin needs a web service URL")
        self._settings = settings
        self._base = settings.web_service_url
        self._timeout = timeout
        self._ensured: set[str] = set()
        self._lock = asyncio.Lock()
        self._ssl: ssl.SSLContext | None = None
        if settings.token_over_plain_http:
            logger.warning(
                "the Pulsar token is sent unencrypted to the admin API at %s: anyone on the "
                "network path can read it and act as you; use an https:// webServiceUrl",
                self._base,
            )
        if self._base.startswith("https://"):
            ctx = ssl.create_default_context(cafile=settings.tls_trust_certs_file_path)
            auth = settings.authentication
            if auth.tls_certificate_file_path:
                ctx.load_cert_chain(auth.tls_certificate_file_path, auth.tls_private_key_file_path)
            if settings.tls_allow_insecure_connection:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx.check_hostname = settings.tls_enable_hostname_verification
            self._ssl = ctx

    def _request_sync(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._base + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        token = self._settings.authentication.token
        if token is not None:
            request.add_header("Authorization", f"Bearer {token.get_secret_value()}")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._ssl) as resp:
                raw = resp.read()
                status: int = resp.status
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:500]
            return e.code, detail
        except (urllib.error.URLError, OSError) as e:
            raise PulsarAdminError(
                f"cannot reach the Pulsar admin API at {self._base} ({method} {path}): {e}; "
                "check webServiceUrl, or remove it to skip the set-up"
            ) from e
        return status, (json.loads(raw) if raw.strip() else None)

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send one request in a worker thread; return (status, decoded body or error text).

        Raises:
            PulsarAdminError: the API could not be reached.
        """
        return await asyncio.to_thread(self._request_sync, method, path, body)

    async def _ok(
        self, method: str, path: str, body: Any = None, *, exists: str | None = None
    ) -> bool:
        """Run a request; True if it created something, False on 409 (already there).

        With ``exists``, a 401/403 (a role allowed to use but not to create) is accepted when a
        GET of ``exists`` finds the entity.
        """
        status, detail = await self.request(method, path, body)
        if status == 409:
            return False
        if status in (401, 403) and exists is not None:
            found, _ = await self.request("GET", exists)
            if found < 300:
                return False
        if status >= 300:
            raise PulsarAdminError(f"Pulsar admin {method} {path} failed with {status}: {detail}")
        return True

    async def ensure_namespace(self) -> None:
        """Create the tenant and the namespace if missing, and apply the policies to a new
        namespace (or to an existing one with ``force_infinitic_policies``); idempotent.

        Raises:
            PulsarAdminError: a request failed.
        """
        async with self._lock:
            if "" in self._ensured:
                return
            s = self._settings
            tenant, namespace = quote(s.tenant, safe=""), quote(s.namespace, safe="")
            tenant_path = f"/admin/v2/tenants/{tenant}"
            status, _ = await self.request("GET", tenant_path)
            if status >= 300:
                clusters = s.allowed_clusters
                if not clusters:
                    status, found = await self.request("GET", "/admin/v2/clusters")
                    if status >= 300 or not isinstance(found, list):
                        raise PulsarAdminError(f"cannot list Pulsar clusters ({status}): {found}")
                    clusters = [str(c) for c in found]
                await self._ok(
                    "PUT", tenant_path, {"adminRoles": s.admin_roles, "allowedClusters": clusters}
                )
            ns_path = f"/admin/v2/namespaces/{tenant}/{namespace}"
            created = await self._ok("PUT", ns_path, {}, exists=f"{ns_path}/retention")
            if created or s.policies.force_infinitic_policies:
                await self._apply_policies(ns_path)
            self._ensured.add("")

    async def _apply_policies(self, base: str) -> None:
        p = self._settings.policies
        await self._ok(
            "POST",
            f"{base}/retention",
            {
                "retentionTimeInMinutes": p.retention_time_in_minutes,
                "retentionSizeInMB": p.retention_size_in_mb,
            },
        )
        await self._ok("POST", f"{base}/messageTTL", p.message_ttl_in_seconds)
        await self._ok("POST", f"{base}/deduplication", p.deduplication_enabled)
        await self._ok(
            "POST",
            f"{base}/delayedDelivery",
            {"active": p.delayed_delivery_enabled, "tickTime": p.delayed_delivery_tick_time_millis},
        )
        logger.info("applied Infinitic policies to Pulsar namespace %s", base.rsplit("/", 2)[-2:])

    async def ensure_topic(self, local_name: str) -> None:
        """Create a topic (partitioned when ``policies.topic_partitions`` > 0) if missing;
        idempotent, and remembered so each topic costs one request per process.

        Raises:
            PulsarAdminError: a request failed.
        """
        if local_name in self._ensured:
            return
        await self.ensure_namespace()
        s = self._settings
        path = "/admin/v2/persistent/{}/{}/{}".format(
            quote(s.tenant, safe=""), quote(s.namespace, safe=""), quote(local_name, safe="")
        )
        partitions = s.policies.topic_partitions
        if partitions > 0:
            await self._ok("PUT", f"{path}/partitions", partitions)
        else:
            await self._ok("PUT", path)
        self._ensured.add(local_name)

    async def backlog(self, local_name: str, subscription: str) -> int | None:
        """The ``msgBacklog`` of ``subscription`` on a topic (its partitions summed), or None
        when the topic or the subscription is unknown, or the API does not answer."""
        s = self._settings
        kind = "partitioned-stats" if s.policies.topic_partitions > 0 else "stats"
        path = "/admin/v2/persistent/{}/{}/{}/{}".format(
            quote(s.tenant, safe=""),
            quote(s.namespace, safe=""),
            quote(local_name, safe=""),
            kind,
        )
        try:
            status, body = await self.request("GET", path)
        except PulsarAdminError:
            return None
        if status >= 300 or not isinstance(body, dict):
            return None
        subscriptions = body.get("subscriptions")
        stats = subscriptions.get(subscription) if isinstance(subscriptions, dict) else None
        value = stats.get("msgBacklog") if isinstance(stats, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return None
        return value
