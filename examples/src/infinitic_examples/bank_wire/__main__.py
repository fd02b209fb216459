"""Runs 100 bank wires on the in-memory transport and storage (``make demo``), or on the
transport and storage of a configuration file (``--config``; e.g. an embedded pulsar-lite broker
and Redis: ``examples/pulsar-lite.yml``).

python -m infinitic_examples.bank_wire [--wires N] [--concurrency N] [--config FILE]
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
    width = 40
    filled = width * done // total
    rate = done / max(time.perf_counter() - started, 1e-9)
    sys.stdout.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} ({rate:,.0f} wires/s)"
    )
    sys.stdout.flush()


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
    print()
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
    args = parser.parse_args()
    asyncio.run(main(args.wires, args.concurrency, args.config))


if __name__ == "__main__":
    cli()
