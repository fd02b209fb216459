"""A process cluster running the bank wire example: an embedded pulsar-lite broker on a data
directory of its own, and worker processes started with the ``infinitic`` command line
(``python -m infinitic.worker.cli worker -c <yaml>``) that can be SIGKILLed and restarted.

Used by the chaos tool (tools/chaos.py) and by the crash tests (tests/backends/test_crash.py).
The services are those of :mod:`chaos_bank`, recording their side effects in Redis.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chaos_bank import RedisLedger
from infinitic.storage import Storage
from infinitic.transport_pulsar import EmbeddedPulsarLite, PulsarTransport

TOOLS = Path(__file__).resolve().parent
_EXAMPLE = "infinitic_examples.bank_wire"
# the format of the worker's log (see infinitic.worker._cli)
_LOG_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<logger>\S+): (?P<message>.*)$")
_QUOTED = re.compile(r"'[^']*'")
# message ids, decimals and numbers of 3 digits or more (ports, pids); small counts stay
_NUMBER = re.compile(r"\(\d+,\d+,-?\d+,-?\d+\)|\d+\.\d+|\d{3,}")


def masked(text: str) -> str:
    """``text`` with its quoted strings, ids and large numbers masked, so alike lines match."""
    return _NUMBER.sub("N", _QUOTED.sub("'…'", text))


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_config(
    broker_url: str,
    namespace: str,
    storage: dict[str, Any],
    *,
    concurrency: int = 20,
    redelivery_delay: float = 0.2,
) -> dict[str, Any]:
    """The YAML configuration of a worker running the bank wires on ``storage`` (a
    ``storage`` section of the configuration file)."""

    def service(name: str, cls: str) -> dict[str, Any]:
        return {
            "name": name,
            "class": cls,
            "interface": f"{_EXAMPLE}.services.{name}",
            "concurrency": concurrency,
        }

    return {
        "name": "chaos-worker",
        "transport": {
            "pulsar": {
                "brokerServiceUrl": broker_url,
                "brokerFlavor": "pulsar-lite",
                "namespace": namespace,
            }
        },
        "storage": storage,
        "redeliveryDelaySeconds": redelivery_delay,
        "services": [
            service("BankService", "chaos_bank.RedisBank"),
            service("EmailService", "chaos_bank.RedisEmails"),
        ],
        "workflows": [
            {
                "name": "BankWorkflow",
                "class": f"{_EXAMPLE}.workflows.BankWorkflow",
                "concurrency": concurrency,
            }
        ],
    }


@dataclass
class WorkerCluster:
    """A pulsar-lite broker, worker processes, and what they are configured with.

    Worker processes use the default consumer-id offsets (random), as users would. Build one
    with :meth:`start`; :meth:`close` kills the workers and stops the broker (its data
    directory is kept).
    """

    broker: EmbeddedPulsarLite
    config: Path
    env: dict[str, str]
    log: Path
    namespace: str
    open_storage: Callable[[], Storage]  # the workers' storage, for inspection
    bank_url: str
    bank_prefix: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    starts: int = 0

    @classmethod
    async def start(
        cls,
        directory: Path,
        *,
        storage: dict[str, Any],
        open_storage: Callable[[], Storage],
        bank_url: str,
        bank_prefix: str,
    ) -> WorkerCluster:
        """Start a broker with its data in ``directory`` and write the worker configuration
        there (no worker is started yet).

        Raises:
            ImportError: pulsar-lite is not installed.
            OSError, RuntimeError: the broker did not start.
        """
        broker = EmbeddedPulsarLite(port=free_port(), data_dir=directory / "broker")
        await broker.start()
        namespace = f"chaos-{uuid.uuid4().hex[:8]}"
        config = directory / "infinitic.yml"
        config.write_text(yaml.safe_dump(worker_config(broker.service_url, namespace, storage)))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TOOLS), os.environ.get("PYTHONPATH", "")]),
            "BANK_REDIS_URL": bank_url,
            "BANK_PREFIX": bank_prefix,
        }
        log = directory / "worker.log"
        return cls(broker, config, env, log, namespace, open_storage, bank_url, bank_prefix)

    def transport(self) -> PulsarTransport:
        """A new transport to the cluster's broker and namespace (for a client)."""
        return PulsarTransport.for_pulsar_lite(self.broker.service_url, namespace=self.namespace)

    def ledger(self) -> RedisLedger:
        """What the workers' services did (close it after use)."""
        return RedisLedger(self.bank_url, self.bank_prefix)

    def start_worker(self) -> None:
        self.starts += 1
        command = [sys.executable, "-m", "infinitic.worker.cli", "worker", "-c", str(self.config)]
        with open(self.log, "ab") as log:
            self.processes.append(
                subprocess.Popen(
                    command,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def kill_worker(self, index: int = 0) -> int:
        """SIGKILL the ``index``-th running worker; return its pid."""
        process = self.processes.pop(index)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        return process.pid

    def kill_all(self) -> None:
        while self.processes:
            self.kill_worker()

    async def restart_broker(self) -> None:
        """SIGKILL the broker and start it again on the same port and data."""
        pid = self.broker.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await self.broker.stop()  # reaps it; the data directory is kept
        await asyncio.sleep(0.2)
        await self.broker.start()

    def log_summary(self, limit: int = 12) -> list[str]:
        """The workers' log errors and warnings, alike lines counted together (quoted text,
        ids and large numbers masked), errors first, then the most frequent."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        kinds: Counter[tuple[str, str]] = Counter()
        for line in lines:
            found = _LOG_LINE.match(line)
            if found and found["level"] in ("ERROR", "CRITICAL", "WARNING"):
                message = masked(found["message"])
                kinds[found["level"], f"{found['logger']}: {message[:200]}"] += 1
        ranked = sorted(kinds.items(), key=lambda kv: (kv[0][0] == "WARNING", -kv[1]))
        shown = [f"{count:6d} x {level} {text}" for (level, text), count in ranked[:limit]]
        return [f"worker log {self.log} (errors and warnings, alike lines counted):", *shown]

    async def close(self) -> None:
        self.kill_all()
        await self.broker.stop()
