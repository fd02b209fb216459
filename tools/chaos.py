"""Chaos run: bank wires across worker processes while workers, the broker and the storage
crash at random (seeded) moments; then a table of what came out.

    python tools/chaos.py [--wires 1000] [--workers 3] [--worker-kills 5]
        [--broker-kill | --no-broker-kill] [--storage-restart | --no-storage-restart]
        [--storage redis|postgres|both] [--seed N] [--stall-seconds 30] [--json]
    make chaos CHAOS_ARGS="--storage redis --seed 7"

For each storage: a private database server (``redis-server`` with an fsynced append-only
file, or a PostgreSQL cluster made by ``initdb``, on a free port in a temporary directory,
never the machine's shared servers), an embedded pulsar-lite broker and W worker processes
(the ``infinitic`` command line). The wires are the example's ``BankWorkflow`` (withdraw,
deposit, email), each between two accounts of its own. Faults, at moments drawn from the seed
as fractions of the wires' tasks run: K worker SIGKILLs (each followed by a new worker), one
broker SIGKILL and restart on the same data, one storage crash (SIGKILL of redis-server,
``pg_ctl stop -m immediate``) and restart after ``--storage-downtime`` seconds. The services
record their side effects in Redis (REDIS_URL, default redis://127.0.0.1:6379/0, under a
prefix of their own): the money moves once per wire and operation, and every execution is
counted.

Columns: completed (an outcome came back), stuck (no outcome after nothing progressed for the
stall window, state still stored), lost (no outcome, no state), wrong (an error, a result other
than ``<id>:email-w<i>-0``, or balances unlike the moves recorded), duplicated results (outcome
messages beyond one per wire), duplicated executions (task runs beyond one per wire and
operation), leftover states (of completed wires), seconds (from the first dispatch; a stalled
run includes its stall window), worker starts, faults injected/planned, broker self-heals
(restarts of the embedded broker after a connection reset, see EmbeddedPulsarLite). The exit
code is 1 when a wire is stuck, lost or wrong. The stored states of the first stuck wires and
a summary of the workers' log errors and warnings are printed below the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chaos_cluster import WorkerCluster
from chaos_storage import private_server
from chaos_wires import FaultPlan, WireReport, run_wires

BANK_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
STORAGES = ("redis", "postgres")


@dataclass(frozen=True)
class ChaosOptions:
    """What a chaos run does (the command line's options)."""

    wires: int = 1000
    workers: int = 3
    worker_kills: int = 5
    broker_kill: bool = True
    storage_restart: bool = True
    storages: tuple[str, ...] = STORAGES
    seed: int = 0
    stall_seconds: float = 30.0
    storage_downtime: float = 1.0
    max_seconds: float = 900.0
    workdir: Path | None = None  # kept afterwards; default: a temporary directory
    bank_redis_url: str = BANK_REDIS_URL  # where the services record their side effects
    json: bool = False  # print a JSON line per report too

    @property
    def plan(self) -> FaultPlan:
        return FaultPlan(self.worker_kills, int(self.broker_kill), int(self.storage_restart))


async def run_chaos(options: ChaosOptions) -> list[WireReport]:
    """One run per storage of ``options``; returns their reports."""
    reports = []
    for name in options.storages:
        if options.workdir is None:
            with tempfile.TemporaryDirectory(prefix="infinitic-chaos-") as directory:
                reports.append(await run_on(name, Path(directory), options))
        else:
            reports.append(await run_on(name, options.workdir / name, options))
    return reports


async def run_on(storage: str, directory: Path, options: ChaosOptions) -> WireReport:
    """A run on a private ``storage`` server whose data, broker and logs go in ``directory``.

    Raises:
        RuntimeError: the database server or the broker did not start.
    """
    _make_directory(directory)
    print(
        f"{storage}: {options.wires} wires, {options.workers} workers, {options.plan.count} "
        f"faults, seed {options.seed}, in {directory}",
        flush=True,
    )
    server = private_server(storage, directory / storage)
    await server.start()
    try:
        cluster = await WorkerCluster.start(
            directory,
            storage=server.storage_section(),
            open_storage=server.open_storage,
            bank_url=options.bank_redis_url,
            bank_prefix=f"infinitic-chaos-{uuid.uuid4().hex[:8]}:",
        )
        ledger = cluster.ledger()

        async def restart_storage() -> None:
            await server.restart(options.storage_downtime)

        try:
            return await run_wires(
                cluster,
                label=storage,
                wires=options.wires,
                workers=options.workers,
                plan=options.plan,
                seed=options.seed,
                stall=options.stall_seconds,
                max_seconds=options.max_seconds,
                restart_storage=restart_storage,
                say=lambda line: print(line, flush=True),
            )
        finally:
            await cluster.close()
            await ledger.clear()
            await ledger.close()
    finally:
        await server.stop()


def _make_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o711)  # the postgres OS user reaches its own directory inside


COLUMNS = [
    ("storage", "storage", "{}"),
    ("wires", "wires", "{}"),
    ("completed", "done", "{}"),
    ("stuck", "stuck", "{}"),
    ("lost", "lost", "{}"),
    ("wrong", "wrong", "{}"),
    ("duplicated_results", "dup res", "{}"),
    ("duplicated_executions", "dup exec", "{}"),
    ("leftover_states", "leftover", "{}"),
    ("elapsed", "seconds", "{:.1f}"),
    ("worker_starts", "starts", "{}"),
    ("faults", "faults", "{}"),
    ("broker_heals", "heals", "{}"),
]


def table(reports: Sequence[WireReport]) -> str:
    """The reports as a text table (faults as injected/planned)."""
    rows = [[title for _, title, _ in COLUMNS]]
    for r in reports:
        values = r.as_dict()
        row = [form.format(values[name]) for name, _, form in COLUMNS]
        row[[n for n, _, _ in COLUMNS].index("faults")] = f"{r.faults}/{r.faults_planned}"
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> ChaosOptions:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--wires", type=int, default=1000, help="bank wires (%(default)s)")
    parser.add_argument("--workers", type=int, default=3, help="worker processes (%(default)s)")
    parser.add_argument(
        "--worker-kills",
        type=int,
        default=5,
        help="worker SIGKILLs, each followed by a new worker (%(default)s)",
    )
    parser.add_argument(
        "--broker-kill",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="SIGKILL the broker once and restart it on its data (on by default)",
    )
    parser.add_argument(
        "--storage-restart",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="crash the storage server once and restart it (on by default)",
    )
    parser.add_argument(
        "--storage",
        choices=[*STORAGES, "both"],
        default="both",
        help="the workflow storage; both: one run each (%(default)s)",
    )
    parser.add_argument("--seed", type=int, help="fault moments and targets (default: random)")
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=30.0,
        help="wires unfinished once no wire completed and no task ran for this long are stuck "
        "(%(default)s)",
    )
    parser.add_argument(
        "--storage-downtime", type=float, default=1.0, help="seconds down (%(default)s)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=900.0, help="at most, per storage (%(default)s)"
    )
    parser.add_argument("--workdir", type=Path, help="keep data and logs here (default: temporary)")
    parser.add_argument("--json", action="store_true", help="also print a JSON line per storage")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.wires < 1:
        parser.error("--workers and --wires must be at least 1")
    return ChaosOptions(
        wires=args.wires,
        workers=args.workers,
        worker_kills=args.worker_kills,
        broker_kill=args.broker_kill,
        storage_restart=args.storage_restart,
        storages=STORAGES if args.storage == "both" else (args.storage,),
        seed=args.seed if args.seed is not None else random.randrange(1_000_000),
        stall_seconds=args.stall_seconds,
        storage_downtime=args.storage_downtime,
        max_seconds=args.max_seconds,
        workdir=args.workdir,
        json=args.json,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (1 when a wire is stuck, lost or wrong)."""
    options = parse_args(argv)
    logging.basicConfig(format="  %(levelname)s %(name)s: %(message)s")
    # the Pulsar client's reconnection chatter while the broker is down
    logging.getLogger("infinitic.transport_pulsar.client").setLevel(logging.CRITICAL)
    reports = asyncio.run(run_chaos(options))
    print(table(reports))
    for r in reports:
        for line in r.details:
            print(f"{r.storage}: {line}")
    if options.workdir is None and not all(r.ok for r in reports):
        print(f"(logs deleted: add --workdir DIR to keep them; --seed {options.seed} replays)")
    if options.json:
        for r in reports:
            print(json.dumps(r.as_dict()))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
