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

Self-healing: when a client's connection dies with a TCP reset (a process killed while bytes
were still on their way to it), pulsar-lite 0.2.0 skips its connection clean-up, so the
consumers of that connection stay registered and keep their unacknowledged messages until the
broker restarts: those messages are stuck, not lost. The broker logs such resets
(``Connection error from ...: ... (os error 104)``); the embedded broker watches its log and
restarts itself on the same port and data a moment after one, so everything is delivered again
(clients reconnect on their own). Set ``heal_connection_resets=False`` to turn this off.

Ownership: the process that launches the broker holds an exclusive lock on
``<data_dir>/owner.lock`` while it runs (the system releases it when the process ends, even when
killed). A second process started on the same data directory finds the lock taken: it never
stops that broker, but joins it as a client (its port is read from ``<data_dir>/owner``); when
the owner exits, one of the processes that joined takes the lock and launches the broker again
on the same port and data (clients reconnect on their own), logging it. A broker whose owner was
SIGKILLed keeps running (it has its own process group); whoever takes the lock next stops it
(its pid is kept in ``<data_dir>/broker.pid``) and launches its own.

Stalled subscriptions: pulsar-lite 0.2.0 skips the consumers of a connection whose outbound
buffer is above its high-water mark (64 KiB by default) and does not dispatch again when the
buffer drains, so a burst of deliveries on a connection shared by many consumers left some
subscriptions idle with messages waiting in the broker until their next publish. The embedded
broker sets the mark out of reach (``WRITE_BUFFER_HIGH_WATER_MARK``); a pulsar-lite launched
elsewhere needs ``pulsar_channel_write_buffer_high_water_mark_bytes`` raised the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from infinitic.transport_pulsar._settings import (
    EMBEDDED_UMASK,
    private_data_dir,
    write_private_file,
)

logger = logging.getLogger("infinitic.transport_pulsar")

#: pulsar-lite 0.2.0 stops dispatching to the consumers of a connection while that connection's
#: outbound buffer is above this mark (64 KiB by default, crossed by any burst of deliveries
#: over 64 KiB), and when the buffer drains it dispatches again only on a subscription's next
#: event (a publish, a flow, a new consumer): a subscription whose dispatch fell in that window
#: keeps its messages in the broker, with its consumers idle and holding permits, until then
#: (seconds to forever on a quiet retry or park topic). 1 GiB is far above what a connection
#: has in flight (its consumers' permits times their message sizes); it is a bound, not an
#: allocation. Measured: 64 KiB stalled about half of the bursts of 20 KB messages to 100
#: subscriptions of one client, 1 GiB none (tests/test_embedded_dispatch.py).
WRITE_BUFFER_HIGH_WATER_MARK = 1 << 30

# How pulsar-lite reports a connection that died with an I/O error (it then skips the clean-up).
_RESET_MARKER = b"Connection error from "
_IO_ERROR_MARKER = b"(os error "


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


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on ``path``, or None when another open
    file (another process) holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _read_owner(data_dir: Path) -> tuple[int, int] | None:
    """The (pid, port) the owner of ``data_dir`` recorded, None when not (yet) recorded."""
    try:
        pid, port = (int(v) for v in (data_dir / "owner").read_text().split())
    except (OSError, ValueError):
        return None
    return pid, port


def _running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class EmbeddedPulsarLite:
    """A pulsar-lite broker process owned by this object.

    Args:
        port: TCP port on 127.0.0.1 (default: a free one).
        data_dir: where the broker keeps its data (default: a temporary directory, deleted
            on :meth:`stop`). An explicit directory is kept, so data survives restarts.
        log_level: the broker's log level (its log goes to ``<data_dir>/broker.log``); keep
            ``error`` or more verbose for the self-healing to see connection resets.
        startup_timeout: seconds to wait for the port to open.
        heal_connection_resets: restart the broker (same port, same data) shortly after it
            logs a connection reset, which pulsar-lite 0.2.0 does not clean up (see the module
            documentation); :attr:`restarts` counts these restarts.
        reset_quiet_seconds: how long to wait after the last reset before restarting (a
            killed process usually resets several connections at once).
        min_restart_interval: the least time between two self-healing restarts.

    Use ``async with EmbeddedPulsarLite() as broker:`` (or ``with`` in synchronous code, or
    ``await start()`` / ``await stop()``), then connect to :attr:`service_url`.

    When another live process owns the broker of ``data_dir``, :meth:`start` joins it
    (:attr:`owned` is False) and :meth:`stop` leaves it running; if that process exits, this
    object launches the broker again (:attr:`takeovers` counts it).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        log_level: str = "warn",
        startup_timeout: float = 15.0,
        heal_connection_resets: bool = True,
        reset_quiet_seconds: float = 0.5,
        min_restart_interval: float = 5.0,
    ) -> None:
        self._requested_port = port
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._owns_dir = data_dir is None
        self._log_level = log_level
        self._startup_timeout = startup_timeout
        self._heal = heal_connection_resets
        self._reset_quiet = reset_quiet_seconds
        self._min_restart_interval = min_restart_interval
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._lock = threading.RLock()
        self._watcher: _ResetWatcher | None = None
        self._owner_watcher: _OwnerWatcher | None = None
        self._lock_fd: int | None = None  # held while this process owns the broker
        self._started = False
        self.owner_pid: int | None = None  # the process owning the broker (this one, or not)
        self.port = 0
        self.restarts = 0
        self.takeovers = 0

    @property
    def service_url(self) -> str:
        """``pulsar://127.0.0.1:<port>`` (valid once started)."""
        if not self._started:
            raise RuntimeError("the embedded broker is not started")
        return f"pulsar://127.0.0.1:{self.port}"

    @property
    def started(self) -> bool:
        """True between :meth:`start` and :meth:`stop` (owned or joined)."""
        return self._started

    @property
    def owned(self) -> bool:
        """True when this process launched the broker and stops it in :meth:`stop`."""
        return self._lock_fd is not None

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

    def _prepare_dir(self) -> Path:
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="infinitic-pulsar-lite-"))
        return private_data_dir(self._data_dir)

    def _take_ownership(self) -> bool:
        """Lock the data directory for this process; False when a live process holds it."""
        if self._lock_fd is None:
            self._lock_fd = _try_lock(self._prepare_dir() / "owner.lock")
        return self._lock_fd is not None

    def _release_ownership(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # releases the lock

    def _launch(self, port: int | None = None) -> None:
        """Launch the broker (this process holds the ownership lock)."""
        binary = _binary()
        data_dir = self._prepare_dir()
        self.port = port or self._requested_port or _free_port()
        config = data_dir / "broker.toml"
        # An explicit config: the default one is read from the working directory, and the
        # default metrics listener binds 0.0.0.0:8080. The write-buffer marks: see
        # WRITE_BUFFER_HIGH_WATER_MARK.
        write_private_file(
            config,
            f'addr = "127.0.0.1:{self.port}"\n'
            "pulsar_channel_write_buffer_high_water_mark_bytes = "
            f"{WRITE_BUFFER_HIGH_WATER_MARK}\n"
            "pulsar_channel_write_buffer_low_water_mark_bytes = "
            f"{WRITE_BUFFER_HIGH_WATER_MARK // 2}\n"
            "\n[metrics]\nenabled = false\n",
        )
        self._stop_stale_broker()
        if self._port_open():
            raise RuntimeError(
                f"127.0.0.1:{self.port} is already in use (another broker?); "
                "choose another port or stop what listens there"
            )
        log = data_dir / "broker.log"
        self._log = open(  # noqa: SIM115 - closed in stop()
            os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab"
        )
        self._process = subprocess.Popen(
            [
                binary,
                "--addr",
                f"127.0.0.1:{self.port}",
                # A path prefix: the broker writes db.rocksdb/ and db.metadata.json next to it.
                "--db-path",
                str(data_dir / "db"),
                "--config",
                str(config),
                "--log-level",
                self._log_level,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=True,
            umask=EMBEDDED_UMASK,  # what the broker writes is private too
        )
        write_private_file(data_dir / "broker.pid", str(self._process.pid))
        write_private_file(data_dir / "owner", f"{os.getpid()} {self.port}")
        self.owner_pid = os.getpid()

    def _stop_stale_broker(self) -> None:
        """Stop a broker left running on this data directory by an owner that died (a
        SIGKILLed worker, say: this process holds the ownership lock, so no live process owns
        it): it holds the port and the data, and its own restarts died with its owner."""
        assert self._data_dir is not None
        try:
            pid = int((self._data_dir / "broker.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return  # none, gone, or no /proc to tell a broker from a reused pid
        if str(self._data_dir / "db").encode() not in cmdline:
            return
        logger.warning(
            "stopping pulsar-lite %d, left running on %s by an owner that is gone",
            pid,
            self._data_dir,
        )

        def gone() -> bool:
            # its threads may still hold the port for a moment after the main one exited
            return not _running(pid) and not self._port_open()

        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while not gone() and time.monotonic() < deadline:
                time.sleep(0.02)
            if gone():
                return

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
        await asyncio.to_thread(self.start_blocking)

    def start_blocking(self) -> None:
        """:meth:`start` for synchronous code (fixtures, scripts)."""
        if self._started:
            return
        with self._lock:
            try:
                if self._take_ownership():
                    self._launch()
                    self._wait_for_port()
                else:
                    self._join()
            except BaseException:
                self.stop_blocking()  # removes a temporary directory it made
                raise
            self._started = True
        if self.owned:
            self._watch()
        else:
            self._owner_watcher = _OwnerWatcher(self)
            self._owner_watcher.start()

    def _join(self) -> None:
        """Connect to the broker another live process owns on this data directory.

        Raises:
            RuntimeError: it listens on another port than the one asked for, or does not open
                its port in time.
        """
        data_dir = self.data_dir
        deadline = time.monotonic() + self._startup_timeout
        while True:
            owner = _read_owner(data_dir)
            if owner is not None:
                pid, port = owner
                if self._requested_port is not None and port != self._requested_port:
                    raise RuntimeError(
                        f"the pulsar-lite broker of {data_dir} belongs to process {pid} and "
                        f"listens on port {port}, not {self._requested_port}: use that port, "
                        "or another data directory"
                    )
                self.port = port
                if self._port_open():
                    break
            if self._take_ownership():  # the owner left meanwhile
                self._launch()
                self._wait_for_port()
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the pulsar-lite broker of {data_dir} is owned by another live process"
                    f"{f' ({owner[0]})' if owner else ''} but did not open its port in time"
                )
            time.sleep(0.05)
        self.owner_pid = owner[0]
        logger.warning(
            "pulsar-lite on port %d (%s) belongs to live process %d: this process joins it as "
            "a client, never stops it, and launches it again if that process exits",
            self.port,
            data_dir,
            self.owner_pid,
        )

    def _take_over(self) -> None:
        """Launch the broker again once its owner has gone (called by the owner watcher,
        which holds the ownership lock)."""
        with self._lock:
            if not self._started:
                self._release_ownership()
                return
            logger.warning(
                "pulsar-lite on port %d (%s): its owner, process %s, has exited; this process "
                "takes the broker over (same port and data)",
                self.port,
                self.data_dir,
                self.owner_pid,
            )
            try:
                self._launch(self.port)
                self._wait_for_port()
            except Exception as e:
                logger.error(
                    "pulsar-lite on port %d: cannot take the broker over (%s): this process "
                    "cannot reach a broker; restart it",
                    self.port,
                    e,
                )
                self._cleanup_process()
                self._release_ownership()
                return
            self.takeovers += 1
        self._watch()

    def _wait_for_port(self) -> None:
        """Wait until the launched broker accepts connections (in a thread: it sleeps).

        Raises:
            RuntimeError: the broker exited, or did not open its port in time.
        """
        deadline = time.monotonic() + self._startup_timeout
        while not self._port_open():
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"pulsar-lite did not open port {self.port} in time")
            time.sleep(0.02)

    def _watch(self) -> None:
        if self._heal and self._watcher is None:
            self._watcher = _ResetWatcher(self, self.data_dir / "broker.log")
            self._watcher.start()

    def _heal_after_reset(self, before_launch: Callable[[], None]) -> None:
        """Restart the broker on its port and data (called by the log watcher)."""
        with self._lock:
            if self._process is None:
                return
            logger.warning(
                "pulsar-lite logged a connection reset: it keeps that connection's consumers "
                "and their unacknowledged messages until it restarts; restarting it on port %d",
                self.port,
            )
            self._terminate()
            before_launch()  # what the old broker logged while stopping is not news
            self._launch(self.port)
            self._wait_for_port()
            self.restarts += 1

    async def stop(self) -> None:
        """Stop the broker with SIGTERM (SIGKILL after 5 s); idempotent."""
        await asyncio.to_thread(self.stop_blocking)

    def stop_blocking(self) -> None:
        """:meth:`stop` for synchronous code. A broker another process owns is left running."""
        owner_watcher, self._owner_watcher = self._owner_watcher, None
        if owner_watcher is not None:
            owner_watcher.stop()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        with self._lock:
            self._started = False
            self._terminate()
            if self._lock_fd is not None and self._data_dir is not None:
                with contextlib.suppress(OSError):
                    (self._data_dir / "owner").unlink()
            self._release_ownership()
        if self._owns_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def _terminate(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(5)
        self._cleanup_process()

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


class _ResetWatcher(threading.Thread):
    """Follows the broker's log and restarts the broker after a connection reset."""

    def __init__(self, broker: EmbeddedPulsarLite, log: Path) -> None:
        super().__init__(name=f"pulsar-lite-watcher:{broker.port}", daemon=True)
        self._broker = broker
        self._path = log
        self._offset = log.stat().st_size if log.exists() else 0
        self._partial = b""
        self._stopping = threading.Event()
        self._last_reset: float | None = None
        self._last_restart = float("-inf")

    def stop(self) -> None:
        self._stopping.set()
        if threading.current_thread() is not self:
            self.join(10)

    def _resets(self) -> int:
        try:
            with open(self._path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return 0
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        return sum(1 for line in lines if _RESET_MARKER in line and _IO_ERROR_MARKER in line)

    def run(self) -> None:
        while not self._stopping.wait(0.1):
            now = time.monotonic()
            if self._resets():
                self._last_reset = now
            if self._last_reset is None:
                continue
            quiet = now - self._last_reset >= self._broker._reset_quiet
            spaced = now - self._last_restart >= self._broker._min_restart_interval
            if quiet and spaced and not self._stopping.is_set():
                self._last_reset = None
                try:
                    self._broker._heal_after_reset(self._skip)
                except Exception:
                    logger.exception("cannot restart pulsar-lite after a connection reset")
                self._last_restart = time.monotonic()

    def _skip(self) -> None:
        self._resets()


class _OwnerWatcher(threading.Thread):
    """In a process that joined another's broker: takes the broker over once the owner has
    released the ownership lock (exited, or stopped its broker)."""

    def __init__(self, broker: EmbeddedPulsarLite) -> None:
        super().__init__(name=f"pulsar-lite-owner-watcher:{broker.port}", daemon=True)
        self._broker = broker
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        if threading.current_thread() is not self:
            self.join(30)

    def run(self) -> None:
        broker = self._broker
        while not self._stopping.wait(0.2):
            try:
                taken = broker._take_ownership()
            except OSError as e:
                logger.warning("pulsar-lite: cannot check the broker's owner: %s", e)
                continue
            if taken:
                if not self._stopping.is_set():
                    broker._take_over()
                else:
                    broker._release_ownership()
                return
