"""Processes of the message-path benchmark (tools/bench_path.py): a pulsar-lite broker with its
Prometheus metrics on, a private Redis server, worker processes, and what /proc says of them.

``EmbeddedPulsarLite`` always turns the broker's metrics off (and offers no option), so the
broker is launched here the way it launches it (same binary and flags, its own process group),
with ``[metrics]`` bound to 127.0.0.1 on a second free port.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15)


def peak_rss_mb(pid: int) -> float:
    """The peak resident set size of ``pid`` (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_average() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def _reference_work(n: int) -> int:
    """Pure Python of the kind the engines run: calls, dicts, attributes, small strings."""

    class Item:
        __slots__ = ("key", "value")

        def __init__(self, key: str, value: int) -> None:
            self.key = key
            self.value = value

    seen: dict[str, Item] = {}
    total = 0
    for i in range(n):
        item = Item(f"k{i & 1023}", i)
        seen[item.key] = item
        total += len(seen) + item.value
    return total


def host_speed_ms(repeat: int = 7) -> float:
    """Milliseconds this host takes for a fixed piece of pure Python (the best of ``repeat``
    runs, so a busy moment does not count): whether two benchmark runs, on two hosts or at two
    moments of a shared host, ran at about the same speed. It sees the interpreter's speed, not
    everything a worker depends on (caches shared with neighbours): a rough guide only."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        _reference_work(200_000)
        best = min(best, time.perf_counter() - started)
    return best * 1000


@dataclass
class Spawned:
    """A process this benchmark started (in a session of its own, so a Ctrl-C in the terminal
    reaches the benchmark only, which then stops it)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; idempotent."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait(5)


_RUNNING: list[Spawned] = []


def running() -> list[Spawned]:
    """The processes started and not stopped yet (a process's owner removes it once stopped);
    whatever is left is stopped when the benchmark exits, however it exits."""
    return _RUNNING


@atexit.register
def _stop_all() -> None:
    for spawned in reversed(_RUNNING):
        spawned.stop(grace=5)


def spawn(
    name: str, command: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> Spawned:
    """Start ``command`` with its output to ``log``, in a session of its own."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log.parent,
            start_new_session=True,
        )
    spawned = Spawned(name, process, log)
    _RUNNING.append(spawned)
    return spawned


def wait_until(
    check: Callable[[], bool], what: str, spawned: Spawned, timeout: float = 30.0
) -> None:
    """Wait until ``check()`` is true (blocking: call it in a thread from async code).

    Raises:
        RuntimeError: ``spawned`` exited, or time ran out.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if not spawned.alive():
            raise RuntimeError(
                f"{spawned.name} exited ({spawned.process.returncode}); see {spawned.log}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{spawned.name}: {what} not seen in {timeout:.0f}s; see {spawned.log}"
            )
        time.sleep(0.05)


@dataclass
class Broker:
    """A pulsar-lite broker with metrics on 127.0.0.1:``metrics_port``."""

    spawned: Spawned
    port: int
    metrics_port: int

    @property
    def service_url(self) -> str:
        return f"pulsar://127.0.0.1:{self.port}"

    def metrics(self) -> dict[str, float]:
        """The broker's unlabelled Prometheus samples (``pulsar_broker_in_messages_total``...)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and not line.startswith("#") and "{" not in parts[0]:
                with contextlib.suppress(ValueError):
                    out[parts[0]] = float(parts[1])
        return out


def start_broker(directory: Path) -> Broker:
    """Launch pulsar-lite with its data, configuration and log in ``directory``."""
    import pulsar_lite

    binary = Path(pulsar_lite.__file__).parent / "bin" / "pulsar-lite"
    directory.mkdir(parents=True, exist_ok=True)
    port, metrics_port = free_port(), free_port()
    config = directory / "broker.toml"
    metrics = f'[metrics]\nenabled = true\naddr = "127.0.0.1:{metrics_port}"\n'
    config.write_text(f'addr = "127.0.0.1:{port}"\n\n{metrics}')
    command = [
        str(binary),
        "--addr",
        f"127.0.0.1:{port}",
        "--db-path",  # a path prefix: db.rocksdb/ and db.metadata.json go next to it
        str(directory / "db"),
        "--config",
        str(config),
        "--log-level",
        "warn",
    ]
    spawned = spawn("broker", command, directory / "broker.log")
    broker = Broker(spawned, port, metrics_port)
    wait_until(lambda: port_open(port) and port_open(metrics_port), "its ports", spawned)
    return broker


def start_redis(directory: Path) -> tuple[Spawned, str]:
    """A private redis-server (no persistence, like the shared one), so its command statistics
    count this benchmark's commands only; returns it and its URL."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
    ]
    spawned = spawn("redis-server", command, directory / "redis.log")
    wait_until(lambda: port_open(port), "its port", spawned)
    return spawned, f"redis://127.0.0.1:{port}/0"


def python_env(code: Sequence[str] = ()) -> dict[str, str]:
    """The environment of the benchmark's Python processes: ``code`` (source directories of
    another version of the packages, which then shadow the installed ones) and tools/ (for the
    benchmark's email service) first on PYTHONPATH."""
    paths = [*code, str(TOOLS), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def start_worker(config: Path, index: int, directory: Path, code: Sequence[str] = ()) -> Spawned:
    """A worker process as users start one: the ``infinitic`` command line on a YAML file."""
    command = [sys.executable, "-m", "infinitic.worker.cli", "worker", "-c", str(config)]
    return spawn(f"worker-{index}", command, directory / f"worker-{index}.log", python_env(code))


def wait_started(worker: Spawned, timeout: float = 60.0) -> None:
    """Wait for the worker's ``worker ... started`` log line."""

    def started() -> bool:
        try:
            return (
                re.search(r" worker \S+ started", worker.log.read_text(errors="replace"))
                is not None
            )
        except OSError:
            return False

    wait_until(started, "'worker ... started'", worker, timeout)


# the worker log format (infinitic.worker._cli): "<date> <time> LEVEL logger: message"
_LOG_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<logger>\S+): (?P<message>.*)$")
_MASK = re.compile(r"'[^']*'|[0-9a-f]{8,}|\d+(\.\d+)?")


@dataclass
class LogSummary:
    """Errors and warnings of some logs, alike lines counted together."""

    errors: int = 0
    warnings: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, path: Path) -> None:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            return
        for line in lines:
            found = _LOG_LINE.match(line)
            if found is not None:
                level, text = found["level"], f"{found['logger']}: {found['message']}"
            elif " ERROR " in line or " WARN " in line:  # the broker's own format
                level, text = ("ERROR" if " ERROR " in line else "WARNING"), line
            elif line.startswith("Traceback"):
                level, text = "ERROR", "Traceback (uncaught)"
            else:
                continue
            if level in ("ERROR", "CRITICAL"):
                self.errors += 1
            elif level in ("WARNING", "WARN"):
                self.warnings += 1
            else:
                continue
            self.kinds[f"{path.stem} {level} {_MASK.sub('N', text)[:160]}"] += 1

    def top(self, limit: int = 6) -> list[str]:
        return [f"{n} x {text}" for text, n in self.kinds.most_common(limit)]
