"""An embedded pulsar-lite broker for development, demos and tests.

pulsar-lite (``pip install 'infinitic-transport-pulsar[lite]'``) is a small Rust broker speaking
the Pulsar binary protocol. It is launched here directly (not through
``pulsar_lite.start_broker``, which binds its metrics listener on ``0.0.0.0:8080`` and scans
shared ports), on ``127.0.0.1`` and a free port, with a private TOML configuration (metrics off)
and a private data directory.

Limits (dev use only): nothing is ever reclaimed on disk (about 110 bytes per message, even once
acknowledged), there is no admin API, no delayed delivery (the transport enforces due times
itself) and Key_Shared, nack on Key_Shared, Exclusive and seek are unreliable (the transport
avoids them). Delete the data directory to reclaim its space.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self


def _binary() -> str:
    try:
        import pulsar_lite
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "EmbeddedPulsarLite needs the pulsar-lite broker: "
            "pip install 'infinitic-transport-pulsar[lite]'"
        ) from e
    path = Path(pulsar_lite.__file__).parent / "bin" / "pulsar-lite"
    if not path.exists():  # pragma: no cover
        raise FileNotFoundError(f"the pulsar-lite binary is missing from its package: {path}")
    return str(path)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedPulsarLite:
    """A pulsar-lite broker process owned by this object.

    Args:
        port: TCP port on 127.0.0.1 (default: a free one).
        data_dir: where the broker keeps its data (default: a temporary directory, deleted
            on :meth:`stop`). An explicit directory is kept, so data survives restarts.
        log_level: the broker's log level (its log goes to ``<data_dir>/broker.log``).
        startup_timeout: seconds to wait for the port to open.

    Use ``async with EmbeddedPulsarLite() as broker:`` (or ``with`` in synchronous code, or
    ``await start()`` / ``await stop()``), then connect to :attr:`service_url`.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        log_level: str = "warn",
        startup_timeout: float = 15.0,
    ) -> None:
        self._requested_port = port
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._owns_dir = data_dir is None
        self._log_level = log_level
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.port = 0

    @property
    def service_url(self) -> str:
        """``pulsar://127.0.0.1:<port>`` (valid once started)."""
        if self._process is None:
            raise RuntimeError("the embedded broker is not started")
        return f"pulsar://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        """The broker's private directory (valid once started)."""
        if self._data_dir is None:
            raise RuntimeError("the embedded broker is not started")
        return self._data_dir

    @property
    def pid(self) -> int | None:
        """The broker's process id, while running."""
        return self._process.pid if self._process is not None else None

    def _launch(self) -> None:
        binary = _binary()
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="infinitic-pulsar-lite-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self._requested_port or _free_port()
        config = self._data_dir / "broker.toml"
        # An explicit config: the default one is read from the working directory, and the
        # default metrics listener binds 0.0.0.0:8080.
        config.write_text(f'addr = "127.0.0.1:{self.port}"\n\n[metrics]\nenabled = false\n')
        self._log = open(self._data_dir / "broker.log", "ab")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [
                binary,
                "--addr",
                f"127.0.0.1:{self.port}",
                # A path prefix: the broker writes db.rocksdb/ and db.metadata.json next to it.
                "--db-path",
                str(self._data_dir / "db"),
                "--config",
                str(config),
                "--log-level",
                self._log_level,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self._data_dir,
            start_new_session=True,
        )

    def _port_open(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def _check_alive(self) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            code = self._process.returncode
            self._cleanup_process()
            raise RuntimeError(
                f"pulsar-lite exited with code {code} on start; see {self.data_dir}/broker.log"
            )

    async def start(self) -> None:
        """Launch the broker and wait until its port accepts connections; idempotent.

        Raises:
            ImportError: pulsar-lite is not installed.
            RuntimeError: the broker exited or did not open its port in time.
        """
        if self._process is not None:
            return
        self._launch()
        deadline = time.monotonic() + self._startup_timeout
        while not await asyncio.to_thread(self._port_open):
            self._check_alive()
            if time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"pulsar-lite did not open port {self.port} in time")
            await asyncio.sleep(0.02)

    def start_blocking(self) -> None:
        """:meth:`start` for synchronous code (fixtures, scripts)."""
        if self._process is not None:
            return
        self._launch()
        deadline = time.monotonic() + self._startup_timeout
        while not self._port_open():
            self._check_alive()
            if time.monotonic() > deadline:
                self.stop_blocking()
                raise RuntimeError(f"pulsar-lite did not open port {self.port} in time")
            time.sleep(0.02)

    async def stop(self) -> None:
        """Stop the broker with SIGTERM (SIGKILL after 5 s); idempotent."""
        await asyncio.to_thread(self.stop_blocking)

    def stop_blocking(self) -> None:
        """:meth:`stop` for synchronous code."""
        process = self._process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(5)
        self._cleanup_process()
        if self._owns_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def _cleanup_process(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(5)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def __enter__(self) -> Self:
        self.start_blocking()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_blocking()
