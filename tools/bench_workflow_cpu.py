"""Workflow executor CPU: one workflow of N sequential tasks against N one-task workflows.

With the live-instance cache, a long workflow is not replayed from its start at each step, so
its executor CPU grows linearly with N (about the cost of N one-task workflows). Without the
cache every step replays the whole history, which grows quadratically.

    uv run python tools/bench_workflow_cpu.py [--tasks 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Protocol

from infinitic.client import InfiniticClient
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker
from infinitic.workflows import Workflow, new_service


class Adder(Protocol):
    async def add(self, a: int, b: int) -> int: ...


class AdderImpl:
    async def add(self, a: int, b: int) -> int:
        return a + b


class Sequential(Workflow):
    adder = new_service(Adder)

    async def run(self, n: int) -> int:
        total = 0
        for i in range(n):
            total = await self.adder.add(total, i)
        return total


async def measure(n: int, tasks_per_workflow: int, cache_size: int) -> tuple[float, float, int]:
    transport, storage = InMemoryTransport(), InMemoryStorage()
    worker = InfiniticWorker(transport=transport, storage=storage, workflow_cache_size=cache_size)
    worker.add_service(AdderImpl(), interface=Adder, concurrency=20)
    worker.add_workflow(Sequential, concurrency=20)
    async with worker, InfiniticClient(transport=transport) as client:
        started = time.perf_counter()
        workflows = n // tasks_per_workflow
        results = await asyncio.gather(
            *(client.new_workflow(Sequential).run(tasks_per_workflow) for _ in range(workflows))
        )
        wall = time.perf_counter() - started
        assert all(r == tasks_per_workflow * (tasks_per_workflow - 1) // 2 for r in results)
        executor = worker.workflow_executor("Sequential")
        return executor.cpu_seconds, wall, executor.replayed_steps


async def main(n: int) -> None:
    rows = []
    for label, per, cache in [
        (f"{n} workflows x 1 task, cache", 1, 1000),
        (f"1 workflow x {n} tasks, cache", n, 1000),
        (f"1 workflow x {n // 2} tasks, cache", n // 2, 1000),
        (f"1 workflow x {n // 4} tasks, no cache", n // 4, 0),
        (f"1 workflow x {n // 2} tasks, no cache", n // 2, 0),
    ]:
        cpu, wall, replayed = await measure(per if per > 1 else n, per, cache)
        rows.append((label, cpu, wall, replayed))
    print(f"{'scenario':<40} {'executor CPU s':>15} {'wall s':>8} {'replayed steps':>15}")
    for label, cpu, wall, replayed in rows:
        print(f"{label:<40} {cpu:>15.3f} {wall:>8.2f} {replayed:>15,}")
    ratio = rows[1][1] / max(rows[2][1], 1e-9)
    print(
        f"\nwith the cache, doubling the tasks multiplies executor CPU by {ratio:.2f} "
        "(linear: about 2)"
    )
    ratio = rows[4][1] / max(rows[3][1], 1e-9)
    print(
        f"without the cache, doubling the tasks multiplies it by {ratio:.2f} (quadratic: about 4)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    asyncio.run(main(parser.parse_args().tasks))
