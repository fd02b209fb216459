"""Fuzz run: hostile messages on every topic a worker consumes, while real bank wires run;
then a table of what became of them.

    python tools/fuzz.py [--messages 10000] [--wires 50] [--seed N]
        [--park-recheck-seconds 1.0] [--oversize-topics N] [--workdir DIR]
    make fuzz FUZZ_ARGS="--messages 2000 --seed 7"

One embedded pulsar-lite broker and ONE worker process (the ``infinitic`` command line, the
bank wire example's ``BankWorkflow`` with the ``BankService`` and ``EmailService`` of
tools/chaos_bank.py) on Redis (REDIS_URL, default redis://127.0.0.1:6379/0, under a key prefix
of its own, deleted afterwards). The consumed topics are every topic of those entities
(``TopicKind``), the retry topic of each subscription and its park topics. A separate transport
publishes ``--messages`` messages spread over every consumed topic and every category of
:mod:`fuzz_messages` (random bytes, empty, msgpack of the wrong shape, Infinitic messages of the
wrong kind, mutated envelopes, forged transport properties), keyed and unkeyed, plus two
oversize ones per topic of ``--oversize-topics`` (garbage just under the broker's limit, and a
10 MB one from a chunking producer). Meanwhile and after, real wires run through a client.

Every fuzz message carries a user property ``x-fuzz-id``, which the dead-letter copy keeps: a
subscription to each ``<topic>-dlq`` counts them. A fuzz message not dead-lettered is *missed*,
unless it is a mutated envelope that still decodes into a message its handler accepts (a valid
message, handled as such; reported apart). The worker's resident memory is read from
/proc/<pid>/status (VmRSS) before the fuzz messages (after a warm-up of wires), during (peak)
and after.

The exit code is 1 when the worker died, a fuzz message was missed or dead-lettered to another
topic than its own, the worker's RSS grew by 50 MB or more, or a wire did not complete right.
On pulsar-lite a park topic's messages are looked at in order, each after the level's wait
(``park_recheck_seconds * 2**level``), so ``--park-recheck-seconds`` bounds how long a message
parked there (forged or not) can wait: 1 s by default here (10 s in a worker's defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
import yaml

from chaos_cluster import WorkerCluster
from chaos_wires import amount, expected_result
from fuzz_messages import (
    CATEGORIES,
    PARK_LEVELS,
    ConsumedTopic,
    FuzzMessage,
    accepted,
    build,
    consumed_topics,
    main_topics,
    oversize,
)
from fuzz_report import DeadLetterAudit, FuzzReport, Sent, log_surprises, table, tally
from infinitic.client import InfiniticClient, WorkflowDeferred
from infinitic.common import decode_message
from infinitic.exceptions import MessageDecodeError
from infinitic.storage import RedisStorage
from infinitic.transport import ConsumerSettings, dead_letter_topic
from infinitic.transport_pulsar import PulsarProducerSettings, PulsarTransport
from infinitic_examples.bank_wire.workflows import BankWorkflow

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
WARM_UP_WIRES = 10
PUBLISH_BATCH = 200


@dataclass(frozen=True)
class FuzzOptions:
    """What a fuzz run does (the command line's options)."""

    messages: int = 10_000
    wires: int = 50
    seed: int = 0
    park_recheck_seconds: float = 1.0
    park_topics: bool = True
    oversize_topics: int | None = None  # main topics given oversize messages; None: all
    chunked: bool = True  # a 10 MB message from a chunking producer on each of those
    stall_seconds: float | None = None  # default: the longest park wait + 30 s
    max_seconds: float = 1200.0
    workdir: Path | None = None
    redis_url: str = REDIS_URL

    @property
    def stall(self) -> float:
        if self.stall_seconds is not None:
            return self.stall_seconds
        return self.park_recheck_seconds * float(2 ** (PARK_LEVELS - 1)) + 30.0


def is_valid_mutant(message: FuzzMessage) -> bool:
    """A mutated envelope that still decodes into a message its handler accepts."""
    if message.category != "mutated":
        return False
    try:
        decoded = decode_message(message.data)
    except MessageDecodeError:
        return False
    return accepted(message.target.kind, message.target.entity, decoded)


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    """A memory figure of ``pid`` from /proc/<pid>/status, in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler:
    """Samples a process's VmRSS every ``period`` seconds, keeping the peak."""

    def __init__(self, pid: int, period: float = 0.25) -> None:
        self.pid = pid
        self.period = period
        self.peak = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb(self.pid))
            await asyncio.sleep(self.period)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.peak = max(self.peak, rss_mb(self.pid), rss_mb(self.pid, "VmHWM"))


async def run_fuzz(options: FuzzOptions, say: Callable[[str], None] = print) -> FuzzReport:
    """Run the fuzz run of ``options`` in its work directory (a temporary one by default)."""
    if options.workdir is None:
        with tempfile.TemporaryDirectory(prefix="infinitic-fuzz-") as directory:
            return await _run(options, Path(directory), say)
    options.workdir.mkdir(parents=True, exist_ok=True)
    return await _run(options, options.workdir, say)


async def _run(options: FuzzOptions, directory: Path, say: Callable[[str], None]) -> FuzzReport:
    report = FuzzReport(seed=options.seed, wires_expected=options.wires)
    prefix = f"infinitic-fuzz-{uuid.uuid4().hex[:8]}:"
    storage = {"redis": {"url": options.redis_url, "keyPrefix": prefix}}
    cluster = await WorkerCluster.start(
        directory,
        storage=storage,
        open_storage=lambda: RedisStorage.from_url(options.redis_url, key_prefix=prefix),
        bank_url=options.redis_url,
        bank_prefix=prefix + "bank:",
    )
    try:
        config = yaml.safe_load(cluster.config.read_text())
        config["name"] = "fuzz-worker"
        config["transport"]["pulsar"]["consumer"] = {
            "parkRecheckSeconds": options.park_recheck_seconds
        }
        cluster.config.write_text(yaml.safe_dump(config))
        cluster.start_worker()
        worker = cluster.processes[0]
        await _wait_started(cluster)
        say(f"worker {worker.pid} started; log {cluster.log}")
        await _fuzz(options, cluster, worker.pid, report, say)
        code = worker.poll()
        report.worker_alive = code is None
        report.worker_exit_code = code
        report.details.extend(log_surprises(cluster.log))
    finally:
        await cluster.close()
        await _delete_keys(options.redis_url, prefix)
    return report


async def _wait_started(cluster: WorkerCluster, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cluster.processes[0].poll() is not None:
            raise RuntimeError(f"the worker exited at start; see {cluster.log}")
        text = cluster.log.read_text(errors="replace") if cluster.log.exists() else ""
        if re.search(r" worker \S+ started", text):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the worker did not start in {within} s; see {cluster.log}")


async def _fuzz(
    options: FuzzOptions,
    cluster: WorkerCluster,
    pid: int,
    report: FuzzReport,
    say: Callable[[str], None],
) -> None:
    rng = random.Random(options.seed)
    topics = consumed_topics(options.park_topics)
    report.consumed_topics = len(topics)
    audit = DeadLetterAudit()
    audit_transport = cluster.transport()
    client_transport = cluster.transport()
    plain = cluster.transport()
    chunking = PulsarTransport.for_pulsar_lite(
        cluster.broker.service_url,
        namespace=cluster.namespace,
        producer=PulsarProducerSettings(chunking_enabled=True),
    )
    sampler = RssSampler(pid)
    waiting: list[asyncio.Future[str]] = []
    deferreds: list[WorkflowDeferred[str]] = []
    try:
        for t in main_topics(topics):
            await audit_transport.subscribe(
                dead_letter_topic(t.topic), "fuzz-audit", audit.handle, ConsumerSettings()
            )
        async with InfiniticClient(transport=client_transport) as client:

            async def dispatch(count: int) -> None:
                for _ in range(count):
                    i = len(deferreds)
                    wf = client.new_workflow(BankWorkflow)
                    d = await client.dispatch(wf.wire, f"w{i}", f"src{i}", f"dst{i}", amount(i))
                    deferreds.append(d)
                    waiting.append(asyncio.ensure_future(d.result()))

            started = time.monotonic()
            warm_up = min(WARM_UP_WIRES, options.wires)
            await dispatch(warm_up)
            if waiting:
                await asyncio.wait(waiting, timeout=60)
            report.rss_before_mb = rss_mb(pid)
            sampler.start()
            say(f"warm-up: {warm_up} wires; worker RSS {report.rss_before_mb:.1f} MB")
            during = (options.wires - warm_up) // 2
            sent = await _publish_all(
                options, rng, topics, plain, chunking, report, dispatch, during
            )
            await dispatch(options.wires - len(deferreds))
            say(f"published {sum(report.sent.values())} messages on {len(topics)} topics")
            await _settle(options, audit, sent, waiting, say)
            await asyncio.sleep(2.0)  # late duplicates; memory after the burst
            report.rss_after_mb = rss_mb(pid)
            await sampler.stop()
            report.rss_peak_mb = sampler.peak
            report.elapsed = time.monotonic() - started
            for i, (d, w) in enumerate(zip(deferreds, waiting, strict=True)):
                finished = w.done() and not w.cancelled() and w.exception() is None
                if finished and w.result() == expected_result(d.id, i):
                    report.wires_completed += 1
            tally(report, sent, audit)
    finally:
        for w in waiting:
            w.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await sampler.stop()
        for transport in (plain, chunking, audit_transport, client_transport):
            await transport.close()


async def _publish_all(
    options: FuzzOptions,
    rng: random.Random,
    topics: list[ConsumedTopic],
    plain: PulsarTransport,
    chunking: PulsarTransport,
    report: FuzzReport,
    dispatch: Callable[[int], Awaitable[None]],
    wires_during: int,
) -> dict[str, Sent]:
    """Publish every fuzz message (oversize ones first, spread among the others), dispatching
    ``wires_during`` wires along the way; return what was sent, by fuzz id."""
    mains = main_topics(topics)
    count = len(mains) if options.oversize_topics is None else options.oversize_topics
    kinds = (False, True) if options.chunked else (False,)
    big = [(t, chunked) for t in mains[:count] for chunked in kinds]
    regular = max(0, options.messages - len(big))
    pairs = [(t, c) for t in topics for c in CATEGORIES]
    rng.shuffle(pairs)
    sent: dict[str, Sent] = {}

    async def publish(m: FuzzMessage) -> None:
        transport = chunking if m.chunked else plain
        try:
            await transport.publish(m.target.physical, m.data, key=m.key, properties=m.properties)
        except Exception as e:  # counted: a publish the broker refused is not a fuzz message
            report.publish_failures[m.category] += 1
            logging.getLogger("fuzz").warning("cannot publish %s: %s", m.detail, e)
            return
        sent[m.id] = Sent(m.category, m.target, m.detail, is_valid_mutant(m))
        report.sent[m.category] += 1

    batches = (regular + PUBLISH_BATCH - 1) // PUBLISH_BATCH
    wires_left = wires_during
    for i, (target, chunked) in enumerate(big):
        await publish(oversize(rng, target, chunked=chunked, keyed=i % 4 < 2))
    for b in range(batches):
        size = min(PUBLISH_BATCH, regular - b * PUBLISH_BATCH)
        first = b * PUBLISH_BATCH
        batch = [
            build(rng, c, t, topics)
            for t, c in (pairs[(first + j) % len(pairs)] for j in range(size))
        ]
        await asyncio.gather(*(publish(m) for m in batch))
        wires_now = wires_left // (batches - b)
        await dispatch(wires_now)
        wires_left -= wires_now
    await dispatch(wires_left)
    return sent


async def _settle(
    options: FuzzOptions,
    audit: DeadLetterAudit,
    sent: dict[str, Sent],
    waiting: list[asyncio.Future[str]],
    say: Callable[[str], None],
) -> None:
    """Wait until every expected dead letter and every wire is in, nothing arrived for the
    stall window, or the run's time is up."""
    expected = {i for i, s in sent.items() if not s.valid}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.max_seconds
    last = loop.time()
    seen = (0, 0)
    said = loop.time()
    while loop.time() < deadline and loop.time() - last < options.stall:
        if expected <= audit.fuzz_ids() and all(w.done() for w in waiting):
            return
        progress = (len(audit.letters), sum(w.done() for w in waiting))
        if progress != seen:
            seen, last = progress, loop.time()
        audit.arrived.clear()
        try:
            await asyncio.wait_for(audit.arrived.wait(), timeout=5.0)
        except TimeoutError:
            if loop.time() - said >= 30.0:
                said = loop.time()
                missing = len(expected - audit.fuzz_ids())
                done = sum(w.done() for w in waiting)
                say(f"  waiting: {missing} dead letters to come, {done}/{len(waiting)} wires done")


async def _delete_keys(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()


def parse_args(argv: Sequence[str] | None = None) -> FuzzOptions:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="fuzz messages (%(default)s)")
    parser.add_argument("--wires", type=int, default=50, help="real bank wires (%(default)s)")
    parser.add_argument("--seed", type=int, help="what is sent where (default: random)")
    parser.add_argument(
        "--park-recheck-seconds",
        type=float,
        default=1.0,
        help="the worker's park_recheck_seconds: bounds the wait on park topics (%(default)s)",
    )
    parser.add_argument(
        "--park-topics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fuzz the park topics too (on by default)",
    )
    parser.add_argument(
        "--oversize-topics", type=int, help="topics given oversize messages (default: all; 0: none)"
    )
    parser.add_argument(
        "--chunked",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a 10 MB chunked message on each of those topics too (on by default)",
    )
    parser.add_argument(
        "--stall-seconds", type=float, help="give up once nothing arrived for this long"
    )
    parser.add_argument("--max-seconds", type=float, default=1200.0, help="at most (%(default)s)")
    parser.add_argument("--workdir", type=Path, help="keep the broker data and logs here")
    args = parser.parse_args(argv)
    if args.messages < 0 or args.wires < 1:
        parser.error("--messages must be >= 0 and --wires >= 1")
    return FuzzOptions(
        messages=args.messages,
        wires=args.wires,
        seed=args.seed if args.seed is not None else random.randrange(1_000_000),
        park_recheck_seconds=args.park_recheck_seconds,
        park_topics=args.park_topics,
        oversize_topics=args.oversize_topics,
        chunked=args.chunked,
        stall_seconds=args.stall_seconds,
        max_seconds=args.max_seconds,
        workdir=args.workdir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (1 when a target is missed)."""
    options = parse_args(argv)
    logging.basicConfig(format="  %(levelname)s %(name)s: %(message)s")
    logging.getLogger("infinitic.transport_pulsar.client").setLevel(logging.CRITICAL)
    report = asyncio.run(run_fuzz(options, say=lambda line: print(line, flush=True)))
    print(table(report))
    for line in report.details:
        print(line)
    print(json.dumps(report.as_dict()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
