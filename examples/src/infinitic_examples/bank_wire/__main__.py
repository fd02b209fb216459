"""Runs 100 bank wires on the in-memory transport and storage (``make demo``).

python -m infinitic_examples.bank_wire [--wires N] [--concurrency N]
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


async def main(wires: int, concurrency: int) -> None:
    transport, storage = InMemoryTransport(), InMemoryStorage()
    bank = InMemoryBank({f"account-{i}": 1_000 for i in range(wires + 1)})
    emails = PrintingEmails()
    worker = InfiniticWorker(transport=transport, storage=storage)
    worker.add_service(bank, interface=BankService, concurrency=concurrency)
    worker.add_service(emails, interface=EmailService, concurrency=concurrency)
    worker.add_workflow(BankWorkflow, concurrency=concurrency)
    async with worker, InfiniticClient(transport=transport) as client:
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
    args = parser.parse_args()
    asyncio.run(main(args.wires, args.concurrency))


if __name__ == "__main__":
    cli()
