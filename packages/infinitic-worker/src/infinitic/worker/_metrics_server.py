"""The HTTP endpoint of a worker's metrics: a small asyncio server on the worker's loop (no
thread), answering ``GET <path>`` with Prometheus's text format and anything else with 404."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST

from infinitic.exceptions import ConfigurationError
from infinitic.worker._metrics import is_loopback

logger = logging.getLogger("infinitic.worker")

_READ_SECONDS = 10.0  # a client that sends nothing is dropped after this
_MAX_HEAD = 16 * 1024


class MetricsServer:
    """Serves ``render()`` at ``http://host:port/path``."""

    def __init__(self, render: Callable[[], bytes], host: str, port: int, path: str) -> None:
        self._render = render
        self._host = host
        self._requested_port = port
        self._path = path
        self._server: asyncio.Server | None = None
        self.port = port

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._serve, self._host, self._requested_port, limit=_MAX_HEAD
            )
        except OSError as e:
            raise ConfigurationError(
                f"metrics endpoint: cannot listen on {self._host}:{self._requested_port} "
                f"({e.strerror or e}); choose another metrics.port, or 0 for any free port"
            ) from e
        self.port = int(self._server.sockets[0].getsockname()[1])
        logger.info(
            "metrics at http://%s:%d%s%s",
            self._host,
            self.port,
            self._path,
            "" if is_loopback(self._host) else " (reachable from other hosts)",
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
            method, target = _request_line(head)
            if method not in ("GET", "HEAD"):
                status, body, kind = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif target.split("?", 1)[0] != self._path:
                status, body, kind = "404 Not Found", f"see {self._path}\n".encode(), "text/plain"
            else:
                status, body, kind = "200 OK", self._render(), CONTENT_TYPE_LATEST
            header = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(header.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that went away or sent nothing useful: nothing to answer
        except ValueError:
            with contextlib.suppress(OSError):
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()


def _request_line(head: bytes) -> tuple[str, str]:
    """The method and target of an HTTP request head.

    Raises:
        ValueError: not an HTTP request line.
    """
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"not an HTTP request: {line[:80]!r}")
    return parts[0], parts[1]
