"""Processes for the command-line tests: an ``infinitic`` command and a worker run by it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

INFINITIC = [sys.executable, "-m", "infinitic.worker.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_url() -> str:
    from infinitic.storage.testing import reachable, service_url

    url = service_url("redis")
    if not reachable(url):
        if os.environ.get("CI"):
            pytest.fail(f"Redis is unreachable at {url}")
        pytest.skip(f"Redis is unreachable at {url}")
    return url


def infinitic(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the ``infinitic`` command to its end."""
    return subprocess.run(
        [*INFINITIC, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class WorkerProcess:
    """``infinitic worker -c <config>`` in a child process, its log in a file."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._file = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*INFINITIC, "worker", "-c", str(config)],
            stdout=self._file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the worker exited ({self.process.returncode}):\n{self.text()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not logged in {timeout} s:\n{self.text()}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        self.signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        self._file.close()
        return code
