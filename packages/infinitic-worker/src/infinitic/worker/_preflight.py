"""Checks a worker runs before it starts anything: its storage answers, its broker accepts
connections. A failure names what is unreachable by its address (passwords hidden)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from infinitic.exceptions import InfiniticError
from infinitic.storage import Storage
from infinitic.transport import normalize_key
from infinitic.worker._secrets import hide_url_password

# Seconds a check keeps trying before it refuses: a server restarting (a second or two) does
# not stop a worker from starting, one that is down does.
CHECK_SECONDS = 10.0
_RETRY_EVERY = 0.5
PROBE_KEY = "infinitic:reachability-probe"
logger = logging.getLogger("infinitic.worker")

_DEFAULT_PORTS = {"pulsar": 6650, "pulsar+ssl": 6651, "redis": 6379, "rediss": 6379}

Check = Callable[[], Awaitable[None]]


class UnreachableError(InfiniticError):
    """A worker's storage or broker does not answer at start; nothing was started."""


def describe_storage(backend: str, options: Mapping[str, Any]) -> str:
    """``storage.redis at redis://:**********@db:6379/0`` (or host and port when no URL)."""
    keys = {normalize_key(str(k)): v for k, v in options.items()}
    if keys.get("url"):
        return f"storage.{backend} at {hide_url_password(str(keys['url']))}"
    host = keys.get("host", "127.0.0.1")
    port = keys.get("port")
    return f"storage.{backend} at {host}{f':{port}' if port else ''}"


async def _retrying(attempt: Callable[[], Awaitable[object]], what: str) -> str | None:
    """Run ``attempt`` until it succeeds (None) or :data:`CHECK_SECONDS` have passed (the
    last error, as text)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CHECK_SECONDS
    warned = False
    while True:
        left = deadline - loop.time()
        try:
            async with asyncio.timeout(max(left, 0.1)):
                await attempt()
            return None
        except TimeoutError:
            error = f"no answer in {CHECK_SECONDS:g} s"
        except Exception as e:
            error = f"{type(e).__name__}: {hide_url_password(str(e))}".rstrip(": ")
        if loop.time() + _RETRY_EVERY >= deadline:
            return error
        if not warned:
            logger.warning("%s does not answer (%s); trying again for %g s", what, error, left)
            warned = True
        await asyncio.sleep(_RETRY_EVERY)


def storage_check(storage: Storage, description: str) -> Check:
    """A check that reads one key of ``storage`` (so connection and credentials are tried)."""

    async def check() -> None:
        error = await _retrying(lambda: storage.key_value.get(PROBE_KEY), description)
        if error is not None:
            raise UnreachableError(
                f"{description} is unreachable ({error}): check the address, the credentials "
                "and that the server runs; nothing was started"
            )

    return check


def _addresses(url: str) -> list[tuple[str, int]]:
    """The (host, port) pairs of a service URL (``pulsar://h1:6650,h2:6650`` has two)."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme, 0)
    found = []
    for item in parts.netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        found.append((host.strip("[]") or "127.0.0.1", int(port) if port.isdigit() else default))
    return found


def broker_check(url: str, what: str) -> Check:
    """A check that opens (and closes) a TCP connection to one of the broker's addresses."""

    async def connect() -> None:
        errors = []
        for host, port in _addresses(url):
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError as e:
                errors.append(f"{host}:{port}: {type(e).__name__}: {e}")
                continue
            writer.close()
            await writer.wait_closed()
            return
        raise OSError("; ".join(errors))

    async def check() -> None:
        error = await _retrying(connect, f"{what} at {hide_url_password(url)}")
        if error is not None:
            raise UnreachableError(
                f"{what} at {hide_url_password(url)} is unreachable ({error}): check the address "
                "and that the broker runs; nothing was started"
            )

    return check
