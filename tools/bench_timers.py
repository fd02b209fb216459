"""Memory of a worker holding many pending durable timers, on pulsar-lite.

    python tools/bench_timers.py [--timers 100000] [--recheck 600]

A worker runs in its own process (so its memory is its own) with the workflow-delay consumer of
a workflow. This script publishes timers due in one hour to that workflow's ``workflow-delay``
topic, exactly as the workflow task event handler does for ``asyncio.sleep(3600)``, in stages,
and samples the worker's resident memory (VmRSS) once the worker has parked every timer so far.
pulsar-lite has no delayed delivery: the consumer holds at most ``max_held_messages`` timers
in memory and parks the others on its retry topic, where each is looked at again every
``--recheck`` seconds (``consumer.parkRecheckSeconds``; each look republishes it once). The
memory must stay flat while the number of pending timers grows.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import uuid
from typing import Any

from infinitic.common import TopicKind, encode_message, topic
from infinitic.common.messages import CommandResult
from infinitic.workflows import Workflow

WORKFLOW = "BenchTimers"


class BenchTimers(Workflow):
    """A workflow whose timers are pending (its code never runs in this benchmark)."""

    async def nap(self) -> None:
        await asyncio.sleep(3600)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def worker_process(url: str, namespace: str, recheck: float) -> None:
    """The worker side: runs the workflow's consumers, prints parked counts and memory."""
    from infinitic.storage import InMemoryStorage
    from infinitic.transport_pulsar import (
        PulsarConsumerSettings,
        PulsarSettings,
        PulsarTransport,
    )
    from infinitic.worker import InfiniticWorker

    parked = 0

    class CountingTransport(PulsarTransport):
        async def _send(self, topic: str, data: bytes, **kwargs: Any) -> None:
            nonlocal parked
            await super()._send(topic, data, **kwargs)
            if topic.endswith("-retry"):
                parked += 1

    settings = PulsarSettings(
        broker_service_url=url,
        broker_flavor="pulsar-lite",
        namespace=namespace,
        consumer=PulsarConsumerSettings(park_recheck_seconds=recheck),
    )
    transport = CountingTransport(settings)
    worker = InfiniticWorker(transport=transport, storage=InMemoryStorage())
    worker.add_workflow(BenchTimers, concurrency=50)
    async with worker:
        while True:
            print(f"parked {parked} rss {rss_mb():.1f}", flush=True)
            await asyncio.sleep(0.5)


async def publish_timers(transport: Any, start: int, count: int, due: float) -> None:
    semaphore = asyncio.Semaphore(500)
    delay_topic = topic(TopicKind.WORKFLOW_DELAY, WORKFLOW)

    async def one(i: int) -> None:
        async with semaphore:
            message = CommandResult(
                workflow_name=WORKFLOW,
                workflow_id=f"wf-{i}",
                command_id=f"timer-{i}",
                status="completed",
                value=due,
                message_id=f"delayed-{i}",
            )
            await transport.publish(delay_topic, encode_message(message), deliver_at=due)

    await asyncio.gather(*(one(i) for i in range(start, start + count)))


async def main(total: int, recheck: float) -> None:
    from infinitic.transport_pulsar import EmbeddedPulsarLite, PulsarTransport

    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    async with EmbeddedPulsarLite() as broker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            broker.service_url,
            namespace,
            str(recheck),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        transport = PulsarTransport.for_pulsar_lite(broker.service_url, namespace=namespace)
        latest = {"parked": 0, "rss": 0.0}

        async def follow() -> None:
            assert process.stdout is not None
            async for line in process.stdout:
                parts = line.decode().split()
                if len(parts) == 4 and parts[0] == "parked":
                    latest["parked"], latest["rss"] = int(parts[1]), float(parts[3])

        follower = asyncio.create_task(follow())
        rows: list[tuple[int, float, float]] = []
        try:
            await asyncio.sleep(3)  # the worker starts
            rows.append((0, latest["rss"], 0.0))
            stages = [s for s in (1_000, 10_000, 50_000, 100_000, 200_000) if s < total]
            stages.append(total)
            published = 0
            due = time.time() + 3600
            for stage in stages:
                started = time.perf_counter()
                await publish_timers(transport, published, stage - published, due)
                published = stage
                while latest["parked"] < published:  # the worker parked every timer so far
                    if process.returncode is not None:
                        raise RuntimeError("the worker process died")
                    await asyncio.sleep(0.5)
                await asyncio.sleep(1.5)
                rows.append((published, latest["rss"], time.perf_counter() - started))
        finally:
            await transport.close()
            process.kill()
            await process.wait()
            follower.cancel()
    print(f"pending timers held by one worker (pulsar-lite, parkRecheckSeconds={recheck:g})")
    print(f"{'pending timers':>15} {'worker RSS (MB)':>16} {'stage time (s)':>15}")
    for count, rss, seconds in rows:
        print(f"{count:>15,} {rss:>16.1f} {seconds:>15.1f}")
    growth = rows[-1][1] - rows[1][1] if len(rows) > 1 else float("nan")
    print(f"RSS growth from {rows[1][0]:,} to {rows[-1][0]:,} pending timers: {growth:+.1f} MB")


if __name__ == "__main__":
    logging.getLogger("infinitic.transport_pulsar.client").setLevel(logging.ERROR)
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        asyncio.run(worker_process(sys.argv[2], sys.argv[3], float(sys.argv[4])))
    else:
        parser = argparse.ArgumentParser(description=__doc__)
        parser.add_argument("--timers", type=int, default=100_000)
        parser.add_argument("--recheck", type=float, default=600.0)
        args = parser.parse_args()
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        asyncio.run(main(args.timers, args.recheck))
