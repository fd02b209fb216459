"""One run of the message-path benchmark (tools/bench_path.py): start a stack's processes,
drive the client through its phases, read every counter around the concurrent phase, stop
everything, and return the run's record."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from bench_path_procs import (
    TOOLS,
    Broker,
    LogSummary,
    cpu_seconds,
    load_average,
    peak_rss_mb,
    python_env,
    running,
    start_broker,
    start_redis,
    start_worker,
    wait_started,
)
from bench_path_stores import Counts, MySQLProbe, PostgresProbe, RedisProbe, StoreProbe

LABELS = {
    "memory": "in-memory (1 process)",
    "redis": "pulsar-lite + Redis",
    "postgres": "pulsar-lite + PostgreSQL",
    "mysql": "pulsar-lite + MySQL",
}
_EXAMPLE = "infinitic_examples.bank_wire"
_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
_MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
_SETTLE = 1.0  # seconds after the last result: trailing deletes and acknowledgements
_SAMPLE_EVERY = 0.5  # seconds between two samples of the stored states


def worker_config(
    broker: Broker, namespace: str, storage: dict[str, Any], concurrency: int
) -> dict[str, Any]:
    """The workers' YAML configuration: the bank wire example on pulsar-lite and ``storage``."""

    def service(name: str, cls: str) -> dict[str, Any]:
        interface = f"{_EXAMPLE}.services.{name}"
        return {"name": name, "class": cls, "interface": interface, "concurrency": concurrency}

    workflow = f"{_EXAMPLE}.workflows.BankWorkflow"
    return {
        "name": "bench-path-worker",
        "transport": {
            "pulsar": {
                "brokerServiceUrl": broker.service_url,
                "brokerFlavor": "pulsar-lite",
                "namespace": namespace,
            }
        },
        "storage": storage,
        "services": [
            service("BankService", "bench_path_services.QuietBank"),
            service("EmailService", "bench_path_services.QuietEmails"),
        ],
        "workflows": [{"name": "BankWorkflow", "class": workflow, "concurrency": concurrency}],
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (seconds), in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _append(path: Path) -> IO[bytes]:
    return open(path, "ab")


class ClientProcess:
    """tools/bench_path_client.py in its own process, driven through its stdin and stdout."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @classmethod
    async def start(cls, arguments: list[str], log: Path, code: list[str]) -> ClientProcess:
        with _append(log) as err:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(TOOLS / "bench_path_client.py"),
                *arguments,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=python_env(code),
                start_new_session=True,  # a Ctrl-C reaches the benchmark, which stops it
                limit=2**24,  # a line holds every latency of a phase
            )
        return cls(process, log)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    async def expect(self, event: str, seconds: float) -> dict[str, Any]:
        """The client's next JSON line, which must be ``event`` (within ``seconds``).

        Raises:
            RuntimeError: the client exited, or said something else.
            TimeoutError: nothing in time.
        """
        assert self.process.stdout is not None
        async with asyncio.timeout(seconds):
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    tail = self.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"the client exited before {event!r}:\n{tail}")
                if line.startswith(b"{"):
                    message: dict[str, Any] = json.loads(line)
                    if message["event"] != event:
                        raise RuntimeError(f"client: expected {event!r}, got {message}")
                    return message

    async def stop(self) -> None:
        """Ask the client to quit; kill it after 30 s; idempotent."""
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.send("quit")
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except (TimeoutError, asyncio.CancelledError):
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()


@dataclass
class Snapshot:
    """Counters of every process and server at one moment."""

    cpu: dict[str, float]
    broker: dict[str, float]
    store: Counts | None


@dataclass
class BenchRun:
    """One stack with ``workers`` worker processes (the in-memory stack: one process)."""

    stack: str
    workers: int
    args: argparse.Namespace
    directory: Path
    processes: dict[str, int] = field(default_factory=dict)  # name -> pid
    probe: StoreProbe | None = None
    broker: Broker | None = None
    client: ClientProcess | None = None
    samples: list[tuple[int, int]] = field(default_factory=list)  # (states, bytes)

    @property
    def memory(self) -> bool:
        return self.stack == "memory"

    @property
    def wires(self) -> int:
        return int(self.args.memory_wires if self.memory else self.args.wires)

    def _open_probe(self) -> StoreProbe:
        if self.stack == "redis":
            if self.args.redis_url:
                return RedisProbe(self.args.redis_url, exclusive=False)
            server, url = start_redis(self.directory / "redis")
            self.processes[server.name] = server.pid
            return RedisProbe(url, exclusive=True)
        if self.stack == "postgres":
            return PostgresProbe(os.environ.get("POSTGRES_URL", _POSTGRES_URL))
        return MySQLProbe(os.environ.get("MYSQL_URL", _MYSQL_URL))

    async def start(self) -> dict[str, Any]:
        """Start the processes; return the client's ``ready`` message (after its warm-up)."""
        a = self.args
        phases = ["--wires", str(self.wires), "--sequential", str(a.sequential)]
        phases += ["--warmup", str(a.warmup)]
        if self.memory:
            arguments = ["--in-memory", "--concurrency", str(a.concurrency), *phases]
        else:
            self.probe = self._open_probe()
            self.broker = await asyncio.to_thread(start_broker, self.directory / "broker")
            self.processes["broker"] = self.broker.spawned.pid
            config = self.directory / "infinitic.yml"
            namespace = f"bench-{os.urandom(4).hex()}"
            settings = worker_config(self.broker, namespace, self.probe.section(), a.concurrency)
            config.write_text(yaml.safe_dump(settings))
            workers = [
                start_worker(config, i + 1, self.directory, a.code) for i in range(self.workers)
            ]
            self.processes |= {w.name: w.pid for w in workers}
            for worker in workers:
                await asyncio.to_thread(wait_started, worker)
            arguments = ["--config", str(config), *phases]
        self.client = await ClientProcess.start(arguments, self.directory / "client.log", a.code)
        self.processes["client"] = self.client.pid
        return await self.client.expect("ready", a.timeout)

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.processes.items()}

    async def broker_metrics(self) -> dict[str, float]:
        return await asyncio.to_thread(self.broker.metrics) if self.broker else {}

    async def _sample(self) -> None:
        assert self.probe is not None
        while True:
            await asyncio.sleep(_SAMPLE_EVERY)
            with contextlib.suppress(Exception):
                self.samples.append(await self.probe.sample())

    async def measure(self, record: dict[str, Any]) -> None:
        """Warm-up, an idle moment, the concurrent phase, the sequential phase; fills
        ``record``."""
        ready = await self.start()
        assert self.client is not None
        flush_delay = self.probe.flush_delay if self.probe else 0.0
        # an idle moment: what the processes burn doing nothing (and, for PostgreSQL, the
        # warm-up's statistics arrive meanwhile)
        idle, idle_from = max(2.0, flush_delay), self.cpu()
        await asyncio.sleep(idle)
        store = await self.probe.counts() if self.probe else None
        before = Snapshot(self.cpu(), await self.broker_metrics(), store)
        record["idle_cpu_pct"] = {
            n: round(100 * (before.cpu[n] - idle_from[n]) / idle, 1) for n in self.processes
        }
        sampler = asyncio.create_task(self._sample()) if self.probe else None
        await self.client.send("concurrent")
        try:
            done = await self.client.expect("concurrent", self.args.timeout)
        finally:
            if sampler is not None:
                sampler.cancel()
        await asyncio.sleep(_SETTLE)
        cpu, broker = self.cpu(), await self.broker_metrics()
        await asyncio.sleep(flush_delay)
        after = Snapshot(cpu, broker, await self.probe.counts() if self.probe else None)
        await self.client.send("sequential")
        seq = await self.client.expect("sequential", self.args.timeout)
        record["peak_rss_mb"] = {n: peak_rss_mb(pid) for n, pid in self.processes.items()}
        await self.client.stop()
        self.fill(record, ready, done, seq, before, after)

    def fill(
        self,
        record: dict[str, Any],
        ready: dict[str, Any],
        done: dict[str, Any],
        seq: dict[str, Any],
        before: Snapshot,
        after: Snapshot,
    ) -> None:
        wires, latencies = self.wires, done["latencies"]
        record |= {
            "workflows_per_s": len(latencies) / done["elapsed"],
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "mean_ms": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
            "seq_p50_ms": percentile(seq["latencies"], 50),
            "seq_p99_ms": percentile(seq["latencies"], 99),
            "errors": {
                "warmup": ready["errors"],
                "concurrent": done["errors"],
                "sequential": seq["errors"],
            },
            "first_errors": done["first_errors"] + seq["first_errors"],
            "cpu_ms_per_wf": {
                n: round(1000 * (after.cpu[n] - before.cpu[n]) / wires, 2) for n in self.processes
            },
        }
        store_before, store_after = before.store, after.store
        if self.memory:  # the client process counted them itself
            old, new = ready["counters"], done["counters"]
            self.samples = [(int(n), int(b)) for n, b in done["samples"]]
            record["messages_per_wf"] = (new["messages"] - old["messages"]) / wires
            store_before = Counts(old["reads"], old["writes"])
            store_after = Counts(new["reads"], new["writes"])
        else:
            for metric, name in (
                ("in_messages", "messages_per_wf"),
                ("out_messages", "deliveries_per_wf"),
                ("in_bytes", "broker_bytes_per_wf"),
            ):
                key = f"pulsar_broker_{metric}_total"
                nan = float("nan")
                record[name] = (after.broker.get(key, nan) - before.broker.get(key, nan)) / wires
        assert store_before is not None
        assert store_after is not None
        record["reads_per_wf"] = (store_after.reads - store_before.reads) / wires
        record["writes_per_wf"] = (store_after.writes - store_before.writes) / wires
        record["storage_detail_per_wf"] = {
            k: round((v - store_before.detail.get(k, 0.0)) / wires, 3)
            for k, v in store_after.detail.items()
            if v != store_before.detail.get(k, 0.0)
        }
        stored = sum(n for n, _ in self.samples)
        record["state_bytes"] = sum(b for _, b in self.samples) / stored if stored else float("nan")
        record["peak_states"] = max((n for n, _ in self.samples), default=0)
        record["storage_counters_exclusive"] = self.probe.exclusive if self.probe else True
        if self.probe is not None and self.probe.other_activity:
            seen = f"{self.probe.other_activity}/{self.probe.samples_taken} samples"
            record["storage_other_clients_seen"] = seen

    async def close(self, logs: LogSummary) -> None:
        """Stop every process of the run (client, workers, broker, Redis), read their logs,
        drop the storage's schema, database or keys; idempotent."""
        if self.client is not None:
            await self.client.stop()
        for spawned in reversed(running()):
            if spawned.log.is_relative_to(self.directory):
                await asyncio.to_thread(spawned.stop)
                logs.add(spawned.log)
                running().remove(spawned)
        logs.add(self.directory / "client.log")
        if self.probe is not None:
            await self.probe.close()


async def run_once(stack: str, workers: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One run of ``stack`` with ``workers`` worker processes; returns its JSON record (with
    ``failed`` if it could not finish)."""
    directory = tmp / f"{stack}-w{workers}"
    directory.mkdir()
    run = BenchRun(stack, workers, args, directory)
    record: dict[str, Any] = {
        "stack": stack,
        "label": LABELS[stack],
        "workers": None if run.memory else workers,
        "wires": run.wires,
        "load1_start": load_average(),
    }
    logs = LogSummary()
    try:
        await run.measure(record)
    except Exception as e:
        record["failed"] = f"{type(e).__name__}: {e}"[:2000]
    finally:
        await run.close(logs)
    record |= {"log_errors": logs.errors, "log_warnings": logs.warnings, "log_top": logs.top()}
    record["load1_end"] = load_average()
    return record
