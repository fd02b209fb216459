"""The message path, measured as users run it: a broker, worker processes and a client process.

    python tools/bench_path.py                      # every stack, 1 and 2 workers, 1000 wires
    python tools/bench_path.py --quick              # 200 wires, 1 worker, pulsar-lite + Redis
    python tools/bench_path.py --stacks redis,postgres --workers 2 --wires 500 --json

Stacks: ``memory`` (one process: a worker and a client on the in-memory transport and storage,
``--memory-wires``, with the garbage-collector settings README advises an application embedding
a worker, as the ``infinitic worker`` command applies them to the other stacks' workers), and
pulsar-lite with ``redis``, ``postgres`` or ``mysql`` storage. For the latter, a pulsar-lite
broker (its own process, Prometheus metrics on), W worker processes (the ``infinitic`` command
line on a generated YAML file: the bank wire example's BankWorkflow and
tools/bench_path_services: QuietBank and QuietEmails, trivial tasks) and a client process
(tools/bench_path_client.py) run side by side. Each run: a warm-up, then every wire dispatched
at once and all awaited (the concurrent phase), then wires one at a time (the sequential phase).

Reported per run: workflows/s and latency p50/p99 of the concurrent phase (dispatch to result),
latency p50/p99 of the sequential phase; for the concurrent phase, CPU ms per workflow of each
process (/proc/<pid>/stat), messages the broker accepted per workflow (its
``pulsar_broker_in_messages_total``; the in-memory transport's own count), storage reads and
writes per workflow and the mean stored state size (see tools/bench_path_stores.py for how
each server is asked); peak RSS of each process (VmHWM); the host's speed just before the run
(``host``: milliseconds for a fixed piece of pure Python, the best of 7, also printed before
and after all runs). Hosts of this kind, and one shared host from one hour to the next, ran
this session's figures up to twice apart; ``host`` follows the host's pure-Python speed, not
all of it (caches shared with neighbours), so it tells when figures of two runs can be
compared, roughly. Redis runs on a private redis-server
unless ``--redis-url`` is given; PostgreSQL and MySQL are POSTGRES_URL and MYSQL_URL (loopback
defaults), in a schema or database of their own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_path_procs import TOOLS, host_speed_ms, load_average
from bench_path_run import LABELS, run_once

STACKS = tuple(LABELS)


LEGEND = """\
W: worker processes; wf/s, p50, p99: concurrent phase (workflows per second; latency from
dispatch to result, ms); sq50, sq99: latency of the sequential phase (ms); CPU (ms per
workflow; workers, client, broker) and msg (messages the broker accepted), rd/wr (storage
reads/writes) per workflow: concurrent phase; RSS: peak (MiB); stateB: mean stored state size
(bytes); err: failed wires / log errors / log warnings; load: 1-minute load average at start;
host: the host's speed just before the run (ms for a fixed piece of pure Python; less is
faster; runs at other host speeds compare only roughly); *: overstated (other clients of a
server-wide counter were busy; see the notes)."""


def cell(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:.{digits}f}"


def per_process(record: dict[str, Any], key: str, digits: int) -> tuple[str, str, str]:
    """Workers (joined by +), client and broker values of ``record[key]``."""
    values = record.get(key, {})
    workers = [v for n, v in sorted(values.items()) if n.startswith("worker")]
    worker = "+".join(cell(v, digits) for v in workers) if workers else "-"
    broker = cell(values["broker"], digits) if "broker" in values else "-"
    return worker, cell(values.get("client"), digits), broker


def table(records: list[dict[str, Any]]) -> str:
    """One row per run."""
    head = (
        f"{'stack':<25}{'W':>2}{'wf/s':>6}{'p50':>7}{'p99':>7}{'sq50':>6}{'sq99':>6} |"
        f"{'CPU wkr':>11}{'cli':>5}{'brk':>5} |{'RSS wkr':>9}{'cli':>4}{'brk':>4} |"
        f"{'msg':>5}{'rd':>6}{'wr':>6}{'stateB':>7} |{'err':>8}{'load':>5}{'host':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in records:
        w = "-" if r["workers"] is None else str(r["workers"])
        if "failed" in r:
            lines.append(f"{r['label']:<25}{w:>2}  FAILED: {r['failed'][:150]}")
            continue
        cw, cc, cb = per_process(r, "cpu_ms_per_wf", 1)
        rw, rc, rb = per_process(r, "peak_rss_mb", 0)
        errors = f"{sum(r['errors'].values())}/{r['log_errors']}/{r['log_warnings']}"
        latency = "".join(
            f"{cell(r[k], 0):>{n}}"
            for k, n in (("p50_ms", 7), ("p99_ms", 7), ("seq_p50_ms", 6), ("seq_p99_ms", 6))
        )
        mark = "*" if r.get("storage_other_clients_seen") else ""  # see the notes
        storage = f"{cell(r['messages_per_wf']):>5}" + "".join(
            f"{cell(r[k]) + mark:>6}" for k in ("reads_per_wf", "writes_per_wf")
        )
        lines.append(
            f"{r['label']:<25}{w:>2}{r['workflows_per_s']:>6.0f}{latency} |"
            f"{cw:>11}{cc:>5}{cb:>5} |{rw:>9}{rc:>4}{rb:>4} |"
            f"{storage}{cell(r['state_bytes'], 0):>7} |{errors:>8}{r['load1_start']:>5.1f}"
            f"{cell(r.get('host_speed_ms'), 0):>5}"
        )
    return "\n".join(lines)


def notes(records: list[dict[str, Any]]) -> str:
    """What a table row does not say: failed wires, shared storage counters, log lines."""
    lines = []
    for r in records:
        name = f"{r['label']}" + ("" if r["workers"] is None else f", W={r['workers']}")
        if "failed" in r:
            lines.append(f"{name}: failed: {r['failed']}")
        for error in r.get("first_errors", []):
            lines.append(f"{name}: wire error: {error}")
        if not r.get("storage_counters_exclusive", True):
            seen = r.get("storage_other_clients_seen")
            lines.append(
                f"{name}: rd/wr are server-wide counters"
                + (f"; other clients were busy in {seen} (overstated)" if seen else "")
            )
        lines.extend(f"{name}: log: {line}" for line in r["log_top"])
    return "\n".join(lines)


async def wait_for_quiet(args: argparse.Namespace) -> None:
    for _ in range(int(args.load_wait / 5)):
        if load_average() <= args.max_load:
            return
        await asyncio.sleep(5)


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    tmp = Path(tempfile.mkdtemp(prefix="bench-path-"))
    records: list[dict[str, Any]] = []
    try:
        args.code = checkout(args.at, tmp / "code") if args.at else []
        for stack in args.stacks:
            for workers in [1] if stack == "memory" else args.workers:
                if args.load_wait:
                    await wait_for_quiet(args)
                what = "" if stack == "memory" else f", {workers} worker process(es)"
                print(f"bench_path: {LABELS[stack]}{what}...", file=sys.stderr, flush=True)
                speed = host_speed_ms()  # this run's host speed (see the table's "host")
                record = await run_once(stack, workers, args, tmp)
                record["host_speed_ms"] = speed
                records.append(record)
                if args.json:
                    print(json.dumps(record), flush=True)
    finally:
        if args.keep:
            print(f"bench_path: logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return records


def git(*arguments: str) -> str:
    command = ["git", "-C", str(TOOLS.parent), *arguments]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def checkout(revision: str, directory: Path) -> list[str]:
    """The packages and examples of ``revision`` (git archive) in ``directory``; returns their
    source directories, to put first on the benchmark processes' PYTHONPATH."""
    directory.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(TOOLS.parent), "archive", revision, "packages", "examples"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    sources = [*sorted(directory.glob("packages/*/src")), directory / "examples" / "src"]
    return [str(p) for p in sources]


def measured_at(args: argparse.Namespace) -> str:
    """Which code ran: a commit (``--at``) or the working tree, with its uncommitted changes."""
    if args.at:
        return f"code of {git('log', '--oneline', '-1', args.at)} (git archive)"
    dirty = git("status", "--short", "--", "packages", "examples").splitlines()
    changes = f", plus {len(dirty)} uncommitted changes in packages/ and examples/" if dirty else ""
    return f"working tree at {git('log', '--oneline', '-1')}{changes}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="200 wires, 1 worker, redis only (under a minute)"
    )
    parser.add_argument("--stacks", help=f"comma-separated, of {','.join(STACKS)} (default: all)")
    parser.add_argument("--workers", help="worker process counts, comma-separated (default 1,2)")
    parser.add_argument("--wires", type=int, help="wires of the concurrent phase (default 1000)")
    parser.add_argument("--memory-wires", type=int, help="same, in-memory stack (default 2000)")
    parser.add_argument("--sequential", type=int, help="wires of the sequential phase (default 50)")
    parser.add_argument("--warmup", type=int, help="warm-up wires (default 100)")
    parser.add_argument(
        "--concurrency", type=int, default=50, help="of each service, workflow (50)"
    )
    parser.add_argument("--redis-url", help="an existing Redis (default: a private redis-server)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per phase")
    parser.add_argument("--json", action="store_true", help="print a JSON line per run too")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data directory")
    parser.add_argument(
        "--at", help="run the packages of this git revision (default: the working tree)"
    )
    parser.add_argument("--max-load", type=float, default=1.5, help="with --load-wait")
    parser.add_argument(
        "--load-wait",
        type=float,
        default=0.0,
        help="seconds to wait before each run for the 1-minute load to drop under --max-load",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.stacks = (args.stacks or ("redis" if quick else ",".join(STACKS))).split(",")
    unknown = set(args.stacks) - set(STACKS)
    if unknown:
        parser.error(f"unknown stacks {sorted(unknown)}; choose among {', '.join(STACKS)}")
    args.workers = [int(w) for w in (args.workers or ("1" if quick else "1,2")).split(",")]
    args.wires = args.wires or (200 if quick else 1000)
    args.memory_wires = args.memory_wires or (400 if quick else 2000)
    args.sequential = args.sequential if args.sequential is not None else (20 if quick else 50)
    args.warmup = args.warmup if args.warmup is not None else (20 if quick else 100)
    return args


if __name__ == "__main__":
    arguments = parse_args()
    code = measured_at(arguments)
    print(f"bench_path: {code}", file=sys.stderr)
    speed_before = host_speed_ms()
    try:
        results = asyncio.run(main(arguments))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench_path: interrupted; every process stopped", file=sys.stderr)
        sys.exit(130)
    speed_after = host_speed_ms()
    print(f"bench_path: the {code}")
    print(
        f"bench_path: host speed: {speed_before:.0f} ms before the runs, {speed_after:.0f} ms "
        "after, for a fixed piece of pure Python (tools/bench_path_procs.host_speed_ms; "
        "less is faster): figures of runs at other host speeds compare only roughly"
    )
    if (now := measured_at(arguments)) != code:
        print(f"bench_path: (it changed meanwhile: now the {now})")
    print(table(results))
    print(LEGEND)
    if extra := notes(results):
        print(extra)
    sys.exit(1 if any("failed" in r for r in results) else 0)
