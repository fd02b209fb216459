"""Service URLs for tests of applications using Infinitic storage.

``service_url("redis" | "postgres" | "mysql")`` returns, in this order: the URL in the
environment variable (``REDIS_URL``, ``POSTGRES_URL``, ``MYSQL_URL``); the loopback default when
a server answers there; a container started with testcontainers when a Docker engine answers
(stopped when the process exits); otherwise the loopback default, so that the test reports the
service as unreachable. testcontainers is only imported on that third path.
"""

from __future__ import annotations

import atexit
import os
import socket
from typing import Any
from urllib.parse import urlsplit

DEFAULTS = {
    "redis": ("REDIS_URL", "redis://127.0.0.1:6379/0"),
    "postgres": ("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "mysql": ("MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
_PORTS = {"redis": 6379, "postgresql": 5432, "postgres": 5432, "mysql": 3306}
_started: dict[str, str] = {}


def reachable(url: str, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections at the URL's host and port."""
    parts = urlsplit(url)
    port = parts.port or _PORTS.get(parts.scheme, 0)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped,unused-ignore]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # no client library, no engine, no permission: no containers
        return False


def _start_container(kind: str) -> str:
    container: Any
    if kind == "redis":
        from testcontainers.redis import RedisContainer

        container = RedisContainer("redis:7").start()
        url = f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
    elif kind == "postgres":
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16", dbname="test").start()
        url = (
            f"postgresql://{container.username}:{container.password}@"
            f"{container.get_container_host_ip()}:{container.get_exposed_port(5432)}/test"
        )
    else:
        from testcontainers.mysql import MySqlContainer

        container = MySqlContainer("mariadb:10.11", dbname="test").start()
        url = (
            f"mysql://root:{container.root_password}@{container.get_container_host_ip()}:"
            f"{container.get_exposed_port(3306)}/test"
        )
    atexit.register(container.stop)
    return url


def service_url(kind: str) -> str:
    """The URL tests should use for a ``redis``, ``postgres`` or ``mysql`` server."""
    if kind not in DEFAULTS:
        raise ValueError(f"unknown service {kind!r}; expected one of {sorted(DEFAULTS)}")
    variable, default = DEFAULTS[kind]
    if variable in os.environ:
        return os.environ[variable]
    if kind in _started:
        return _started[kind]
    if reachable(default) or not _docker_available():
        return default
    try:
        _started[kind] = _start_container(kind)
    except Exception:  # a broken engine or image pull: the caller reports it unreachable
        return default
    return _started[kind]
