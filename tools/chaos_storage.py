"""Database servers of our own, on free ports and private directories, that the chaos tool
crashes and restarts without disturbing the machine's shared servers.

- :class:`PrivateRedis`: ``redis-server`` with ``--appendonly yes --appendfsync always``, so a
  SIGKILL loses no acknowledged write.
- :class:`PrivatePostgres`: a cluster made by ``initdb`` (from ``/usr/lib/postgresql/*/bin`` or
  the PATH), run as the ``postgres`` OS user when we are root; a crash is
  ``pg_ctl stop -m immediate`` (no checkpoint: the restart replays the WAL).
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from chaos_cluster import free_port
from infinitic.storage import PostgresStorage, RedisStorage, Storage


def _wait_for_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not open port {port} in {timeout:.0f} s") from None
            time.sleep(0.02)


class PrivateServer(ABC):
    """A database server this process owns; ``start``, ``crash``, ``start`` again, ``stop``.

    Args:
        directory: where its data and log go (created; kept after :meth:`stop`).
    """

    name = ""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()

    @abstractmethod
    def storage_section(self) -> dict[str, Any]:
        """The ``storage`` section of a worker configuration using this server."""

    @abstractmethod
    def open_storage(self) -> Storage:
        """A storage on this server, configured as the workers' one."""

    @abstractmethod
    def _start(self) -> None: ...

    @abstractmethod
    def _crash(self) -> None: ...

    @abstractmethod
    def _stop(self) -> None: ...

    async def start(self) -> None:
        """Start it (the first time: create its data) and wait until it accepts connections.

        Raises:
            RuntimeError: its binaries are missing or it did not start.
        """
        await asyncio.to_thread(self._start)

    async def restart(self, downtime: float) -> None:
        """Crash it (no clean shutdown), wait ``downtime`` seconds, start it again."""
        await asyncio.to_thread(self._crash)
        await asyncio.sleep(downtime)
        await self.start()

    async def stop(self) -> None:
        """Stop it; idempotent."""
        await asyncio.to_thread(self._stop)


class PrivateRedis(PrivateServer):
    """A ``redis-server`` logging every write to an fsynced append-only file."""

    name = "redis"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def storage_section(self) -> dict[str, Any]:
        return {"redis": {"url": self.url, "keyPrefix": "chaos:"}}

    def open_storage(self) -> Storage:
        return RedisStorage.from_url(self.url, key_prefix="chaos:")

    def _start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on the PATH (apt-get install redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        # The shared settings of redis-server(1): a private port and directory, no RDB
        # snapshots, every write appended and fsynced before it is acknowledged.
        command = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_for_port(self.port, 15, "redis-server")

    def _crash(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait(10)
            self._process = None

    def _stop(self) -> None:
        self._crash()


class PrivatePostgres(PrivateServer):
    """A PostgreSQL cluster of our own (``initdb`` on the first start).

    Run as the postgres OS user when we are root: if that user cannot reach ``directory`` (a
    parent closed to other users, like pytest's temporary directories), the cluster goes to a
    temporary directory of its own instead, deleted by :meth:`stop`.
    """

    name = "postgres"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self._bin = self._find_bin()
        self._running = False
        self._temporary = os.geteuid() == 0 and not _open_to_others(directory)
        if self._temporary:
            self.directory = Path(tempfile.mkdtemp(prefix="infinitic-chaos-postgres-"))

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def storage_section(self) -> dict[str, Any]:
        return {"postgres": {"url": self.url, "schema": "chaos"}}

    def open_storage(self) -> Storage:
        return PostgresStorage.from_url(self.url, schema="chaos")

    @staticmethod
    def _find_bin() -> Path | None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
        if found:
            return Path(found[-1]).parent
        initdb = shutil.which("initdb")
        return Path(initdb).parent if initdb else None

    def _run(self, tool: str, *args: str) -> None:
        if self._bin is None:
            raise RuntimeError(
                "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin "
                "or on the PATH"
            )
        # PostgreSQL refuses to run as root: run it as the postgres OS user then.
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        command = [*as_user, str(self._bin / tool), *args]
        done = subprocess.run(command, capture_output=True, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace").strip()
            raise RuntimeError(f"{tool} failed with code {done.returncode}: {output}")

    def _start(self) -> None:
        data = self.directory / "data"
        if not data.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.directory, "postgres", "postgres")
            self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = str(self.directory / "postgres.log")
        self._run("pg_ctl", "-D", str(data), "-l", log, "-o", options, "-w", "start")
        self._running = True
        _wait_for_port(self.port, 15, "PostgreSQL")

    def _crash(self) -> None:
        self._pg_stop("immediate")

    def _stop(self) -> None:
        self._pg_stop("fast")
        if self._temporary:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _pg_stop(self, mode: str) -> None:
        if self._running:
            self._running = False
            self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", mode, "-w", "stop")


def _open_to_others(directory: Path) -> bool:
    """True when other users may pass through every existing parent of ``directory``."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in directory.parents if p.exists())


def _version(path: str) -> tuple[int, ...]:
    """The version in ``/usr/lib/postgresql/<version>/bin/initdb``, for sorting."""
    part = Path(path).parent.parent.name
    return tuple(int(p) for p in part.split(".") if p.isdigit())


def unavailable_reason(name: str) -> str | None:
    """Why a private ``name`` server (redis or postgres) cannot run here, or None."""
    if name == "redis":
        return None if shutil.which("redis-server") else "redis-server is not installed"
    if PrivatePostgres._find_bin() is None:
        return "the PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no postgres OS user to run PostgreSQL as"
    return None


def private_server(name: str, directory: Path) -> PrivateServer:
    """A :class:`PrivateRedis` or :class:`PrivatePostgres` (``name``: redis or postgres)."""
    servers: dict[str, type[PrivateServer]] = {"redis": PrivateRedis, "postgres": PrivatePostgres}
    return servers[name](directory)
