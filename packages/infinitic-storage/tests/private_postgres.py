"""A PostgreSQL server of a test's own, with TLS on, on a free loopback port.

PostgreSQL refuses to run as root: under root the server runs as ``nobody`` (with ``runuser``).
Skips the test when ``initdb``/``postgres`` are missing or the server was built without TLS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .private_redis import Certificates, free_port


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return [_binary("runuser"), "-u", "nobody", "--", *command]


@contextmanager
def private_postgres(tls: Certificates) -> Iterator[int]:
    """Run a throw-away PostgreSQL accepting TLS (and plaintext) with trust auth; yield its port.

    Its user is ``postgres``; its certificate is ``tls.server_cert``.
    """
    initdb, postgres = _binary("initdb"), _binary("postgres")
    # Not under pytest's tmp_path: its directories are private to root, and the server may run
    # as nobody.
    root = Path(tempfile.mkdtemp(prefix="infinitic-pg-tls-"))
    data = root / "data"
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "nobody")
        subprocess.run(
            _as_server_user([initdb, "-D", str(data), "-A", "trust", "-U", "postgres"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        for source, name in ((tls.server_cert, "server.crt"), (tls.server_key, "server.key")):
            target = data / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if os.geteuid() == 0:
                shutil.chown(target, "nobody")
        port = free_port()
        log = root / "postgres.log"
        command = [postgres, "-D", str(data), "-p", str(port), "-k", str(root)]
        command += ["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on", "-c", "fsync=off"]
        with log.open("wb") as out:
            if os.geteuid() == 0:
                shutil.chown(log, "nobody")
            process = subprocess.Popen(
                _as_server_user(command), stdout=out, stderr=subprocess.STDOUT
            )
        try:
            _wait_ready(process, log, port)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(process: subprocess.Popen[bytes], log: Path, port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        if process.poll() is not None:
            if "SSL" in text and "not supported" in text:
                pytest.skip(f"postgres was built without TLS support: {text[-300:]}")
            pytest.fail(f"postgres exited: {text[-500:]}")
        if "ready to accept connections" in text:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"postgres was not ready within 30 s on port {port}: {text[-500:]}")
        time.sleep(0.05)
