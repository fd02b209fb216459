"""Runs 100 bank wires on the in-memory transport and storage (``make demo``), or on the
transport and storage of a configuration file (``--config``; e.g. an embedded pulsar-lite broker
and Redis: ``examples/pulsar-lite.yml``). With ``--client-only``, only the client runs: workers
started elsewhere do the work (``examples/separated``).

A progress bar is drawn when standard output is a terminal; otherwise (a log, a pipe) one line
says how far it got every tenth of the wires.

python -m infinitic_examples.bank_wire [--wires N] [--concurrency N] [--config FILE]
    [--client-only]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from infinitic.client import InfiniticClient
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow


def _progress(done: int, total: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    if not sys.stdout.isatty():  # no carriage-return frames in logs: a line now and then
        if done == total or done % max(total // 10, 1) == 0:
            print(f"{done}/{total} wires ({rate:,.0f} wires/s)", flush=True)
        return
    width = 40
    filled = width * done // total
    sys.stdout.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} ({rate:,.0f} wires/s)"
    )
    if done == total:
        sys.stdout.write("\n")
    sys.stdout.flush()


async def run_client(wires: int, config: str) -> None:
    """Run ``wires`` bank wires through the workers of ``config``'s transport (run elsewhere)."""
    async with InfiniticClient.from_yaml(config) as client:
        started = time.perf_counter()
        done = 0

        async def one(i: int) -> str:
            nonlocal done
            wf = client.new_workflow(BankWorkflow, tags={f"customer:{i}"})
            result = await wf.wire(f"wire-{i}", f"account-{i}", f"account-{i + 1}", 10)
            done += 1
            _progress(done, wires, started)
            return result

        results = await asyncio.gather(*(one(i) for i in range(wires)))
        elapsed = time.perf_counter() - started
    for r in results[:5]:
        print(f"  {r}")
    print(f"{wires} wires in {elapsed:.2f}s ({wires / elapsed:,.0f} wires/s)")


async def main(wires: int, concurrency: int, config: str | None = None) -> None:
    if config is None:
        transport = InMemoryTransport()
        worker = InfiniticWorker(transport=transport, storage=InMemoryStorage())
        client = InfiniticClient(transport=transport)
    else:
        # the worker starts an embedded broker if the file asks for one; the client connects
        worker = InfiniticWorker.from_yaml(config)
        client = InfiniticClient.from_yaml(config)
    bank = InMemoryBank({f"account-{i}": 1_000 for i in range(wires + 1)})
    emails = PrintingEmails()
    worker.add_service(bank, interface=BankService, concurrency=concurrency)
    worker.add_service(emails, interface=EmailService, concurrency=concurrency)
    worker.add_workflow(BankWorkflow, concurrency=concurrency)
    async with worker, client:
        started = time.perf_counter()
        done = 0

        async def one(i: int) -> str:
            nonlocal done
            wf = client.new_workflow(BankWorkflow, tags={f"customer:{i}"})
            result = await wf.wire(f"wire-{i}", f"account-{i}", f"account-{i + 1}", 10)
            done += 1
            _progress(done, wires, started)
            return result

        results = await asyncio.gather(*(one(i) for i in range(wires)))
        elapsed = time.perf_counter() - started
    for r in results[:5]:
        print(f"  {r}")
    if wires > 5:
        print(f"  ... and {wires - 5} more")
    total = sum(bank.balances.values())
    print(
        f"{wires} wires in {elapsed:.2f}s ({wires / elapsed:,.0f} wires/s); "
        f"{len(emails.sent)} emails; money conserved: {total == 1_000 * (wires + 1)}"
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wires", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--config", help="a YAML file with transport and storage sections")
    parser.add_argument(
        "--client-only",
        action="store_true",
        help="run the client only (with --config): workers started elsewhere do the work",
    )
    args = parser.parse_args()
    if args.client_only:
        if args.config is None:
            parser.error("--client-only needs --config (the workers' transport)")
        asyncio.run(run_client(args.wires, args.config))
    else:
        asyncio.run(main(args.wires, args.concurrency, args.config))


if __name__ == "__main__":
    cli()
