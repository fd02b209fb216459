"""Memory and idle CPU of a worker holding many pending durable timers, on pulsar-lite.

    python tools/bench_timers.py [--timers 10000] [--due 3600] [--idle 60] [--recheck S]
                                 [--until-fired]

A worker runs in its own process (so its memory and CPU are its own) with the consumers of a
workflow. This script publishes timers due ``--due`` seconds from now to that workflow's
``workflow-delay`` topic, exactly as the workflow task event handler does for
``asyncio.sleep(3600)``, in stages, and samples the worker's resident memory (VmRSS) once the
worker has parked every timer so far. Then, with every timer parked, it measures the worker's
CPU (utime + stime of all its threads, from ``/proc/<pid>/stat``) and the broker's over an
``--idle`` window, as a fraction of one core, and counts the republishes of parked timers in
that window. With ``--until-fired`` it goes on until every timer has fired (reached the
workflow's ``workflow-engine`` topic) and reports, over the timers' whole life, the republishes
per timer, the average CPU and how late the last timer fired; a short ``--due`` with a small
``--recheck`` (the shortest park) shows the same schedule scaled down.

pulsar-lite has no delayed delivery: the consumer holds the timers due soon in memory (at most
``max_held_messages``) and parks the others on park topics, where each waits without costing
anything and is republished only at each look (``consumer.parkRecheckSeconds`` is the shortest
wait). Memory must stay flat while the number of pending timers grows, and CPU near zero.
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
_TICKS = os.sysconf("SC_CLK_TCK")


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces: the fields after it start past the last ")".
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def worker_process(url: str, namespace: str, recheck: float | None) -> None:
    """The worker side: runs the workflow's consumers, prints parked and fired counts, memory."""
    from infinitic.storage import InMemoryStorage
    from infinitic.transport_pulsar import (
        PulsarConsumerSettings,
        PulsarSettings,
        PulsarTransport,
    )
    from infinitic.worker import InfiniticWorker

    parked = fired = 0
    last_fired = 0.0
    engine_topic = topic(TopicKind.WORKFLOW_ENGINE, WORKFLOW)

    class CountingTransport(PulsarTransport):
        async def _send(self, topic: str, data: bytes, **kwargs: Any) -> None:
            nonlocal fired, last_fired
            await super()._send(topic, data, **kwargs)
            if topic == engine_topic:
                fired += 1
                last_fired = time.time()

        async def _republish(self, topic: str, data: bytes, **kwargs: Any) -> None:
            # Parked copies go through here (retry and park topics), not through _send.
            nonlocal parked
            await super()._republish(topic, data, **kwargs)
            if topic.endswith("-retry") or "-park-" in topic:
                parked += 1

    tuning = PulsarConsumerSettings()
    if recheck is not None:
        tuning = PulsarConsumerSettings(park_recheck_seconds=recheck)
    settings = PulsarSettings(
        broker_service_url=url, broker_flavor="pulsar-lite", namespace=namespace, consumer=tuning
    )
    transport = CountingTransport(settings)
    worker = InfiniticWorker(transport=transport, storage=InMemoryStorage())
    worker.add_workflow(BenchTimers, concurrency=50)
    async with worker:
        while True:
            print(f"parked {parked} fired {fired} rss {rss_mb():.1f} last {last_fired:.3f}")
            await asyncio.sleep(1.0)


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


class _Follower:
    """The worker's last report: parked and fired counts, RSS, when the last timer fired."""

    def __init__(self) -> None:
        self.parked = 0
        self.fired = 0
        self.rss = 0.0
        self.last_fired_at = 0.0

    async def follow(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            parts = line.decode().split()
            if len(parts) == 8 and parts[0] == "parked":
                self.parked, self.fired = int(parts[1]), int(parts[3])
                self.rss, self.last_fired_at = float(parts[5]), float(parts[7])


async def main(
    total: int, due_in: float, idle: float, recheck: float | None, until_fired: bool
) -> None:
    from infinitic.transport_pulsar import EmbeddedPulsarLite, PulsarTransport

    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    async with EmbeddedPulsarLite() as broker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            broker.service_url,
            namespace,
            "" if recheck is None else str(recheck),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert process.stdout is not None
        assert broker.pid is not None
        transport = PulsarTransport.for_pulsar_lite(broker.service_url, namespace=namespace)
        latest = _Follower()
        follower = asyncio.create_task(latest.follow(process.stdout))
        rows: list[tuple[int, float, float]] = []

        def alive() -> None:
            if process.returncode is not None:
                raise RuntimeError("the worker process died")

        try:
            await asyncio.sleep(3)  # the worker starts
            rows.append((0, latest.rss, 0.0))
            stages = [s for s in (1_000, 10_000, 50_000, 100_000, 200_000) if s < total]
            stages.append(total)
            published = 0
            born = time.time()
            worker_cpu_born = cpu_seconds(process.pid)
            broker_cpu_born = cpu_seconds(broker.pid)
            due = born + due_in
            for stage in stages:
                started = time.perf_counter()
                await publish_timers(transport, published, stage - published, due)
                published = stage
                while latest.parked < published:  # the worker parked every timer so far
                    alive()
                    await asyncio.sleep(0.5)
                await asyncio.sleep(2.0)
                rows.append((published, latest.rss, time.perf_counter() - started))
            await asyncio.sleep(3.0)  # let the last parks settle
            parked_before = latest.parked
            wall = time.perf_counter()
            worker_cpu = cpu_seconds(process.pid)
            broker_cpu = cpu_seconds(broker.pid)
            await asyncio.sleep(idle)
            alive()
            wall = time.perf_counter() - wall
            worker_idle = (cpu_seconds(process.pid) - worker_cpu) / wall
            broker_idle = (cpu_seconds(broker.pid) - broker_cpu) / wall
            idle_parks = latest.parked - parked_before
            idle_rss = latest.rss
            life: tuple[float, float, float, float] | None = None
            if until_fired:
                while latest.fired < total:
                    alive()
                    await asyncio.sleep(1.0)
                lived = time.time() - born
                life = (
                    latest.parked / total,
                    (cpu_seconds(process.pid) - worker_cpu_born) / lived,
                    (cpu_seconds(broker.pid) - broker_cpu_born) / lived,
                    latest.last_fired_at - due,
                )
        finally:
            await transport.close()
            process.kill()
            await process.wait()
            follower.cancel()
    shown = "default" if recheck is None else f"{recheck:g}"
    print(f"pending timers held by one worker (pulsar-lite, parkRecheckSeconds={shown})")
    print(f"{'pending timers':>15} {'worker RSS (MB)':>16} {'stage time (s)':>15}")
    for count, rss, seconds in rows:
        print(f"{count:>15,} {rss:>16.1f} {seconds:>15.1f}")
    growth = rows[-1][1] - rows[1][1] if len(rows) > 1 else float("nan")
    print(f"RSS growth from {rows[1][0]:,} to {rows[-1][0]:,} pending timers: {growth:+.1f} MB")
    print(
        f"idle, {total:,} timers due in {due_in:g} s, over {wall:.0f} s: worker "
        f"{worker_idle:.4f} core, broker {broker_idle:.4f} core, worker RSS {idle_rss:.1f} MB, "
        f"{idle_parks:,} republishes ({idle_parks / total * 3600 / wall:.1f} per timer per hour)"
    )
    if life is not None:
        per_timer, worker_avg, broker_avg, late = life
        print(
            f"until fired: {per_timer:.1f} parks per timer (first park included), average "
            f"worker {worker_avg:.4f} core, broker {broker_avg:.4f} core; "
            f"last timer fired {late:+.1f} s after due"
        )


if __name__ == "__main__":
    logging.getLogger("infinitic.transport_pulsar.client").setLevel(logging.ERROR)
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        recheck_arg = float(sys.argv[4]) if sys.argv[4] else None
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        asyncio.run(worker_process(sys.argv[2], sys.argv[3], recheck_arg))
    else:
        parser = argparse.ArgumentParser(description=__doc__)
        parser.add_argument("--timers", type=int, default=10_000)
        parser.add_argument("--due", type=float, default=3600.0, help="seconds until due")
        parser.add_argument("--idle", type=float, default=60.0, help="idle window, seconds")
        parser.add_argument("--recheck", type=float, default=None, help="parkRecheckSeconds")
        parser.add_argument("--until-fired", action="store_true")
        args = parser.parse_args()
        asyncio.run(main(args.timers, args.due, args.idle, args.recheck, args.until_fired))
