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
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import yaml

from chaos_cluster import WorkerCluster
from chaos_wires import amount, expected_result
from fuzz_messages import (
    CATEGORIES,
    FUZZ_ID,
    OVERSIZE,
    ConsumedTopic,
    FuzzMessage,
    accepted,
    build,
    oversize,
)
from infinitic.client import InfiniticClient, WorkflowDeferred
from infinitic.common import SERVICE_TOPICS, WORKFLOW_TOPICS, decode_message
from infinitic.exceptions import MessageDecodeError
from infinitic.storage import RedisStorage
from infinitic.transport import (
    DLQ_DELIVERIES_PROPERTY,
    DLQ_ERROR_PROPERTY,
    ConsumerSettings,
    TransportMessage,
    dead_letter_topic,
)
from infinitic.transport_pulsar import PulsarProducerSettings, PulsarTransport
from infinitic_examples.bank_wire.workflows import BankWorkflow

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
SERVICES = ("BankService", "EmailService")
WORKFLOWS = ("BankWorkflow",)
SUBSCRIPTION = "infinitic"  # the worker's subscription (infinitic.worker)
PARK_LEVELS = 8  # park topics per subscription on pulsar-lite (transport_pulsar._parking)
RSS_GROWTH_LIMIT_MB = 50.0
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


@dataclass
class Sent:
    """What the run remembers of a published fuzz message (its data is not kept)."""

    category: str
    target: ConsumedTopic
    detail: str
    valid: bool  # a mutant that decodes into a message its handler accepts


@dataclass
class DeadLetter:
    topic: str  # the dead-letter topic it was read from
    fuzz_id: str | None
    deliveries: int
    error: str


@dataclass
class FuzzReport:
    """The outcome of a run (see the module documentation)."""

    seed: int
    sent: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    handled_valid: Counter[str] = field(default_factory=Counter)
    missed: Counter[str] = field(default_factory=Counter)
    misplaced: Counter[str] = field(default_factory=Counter)
    max_deliveries: Counter[str] = field(default_factory=Counter)
    publish_failures: Counter[str] = field(default_factory=Counter)
    dlq_by_topic: dict[str, dict[str, int]] = field(default_factory=dict)
    duplicate_dead_letters: int = 0
    other_dead_letters: int = 0
    consumed_topics: int = 0
    worker_alive: bool = True
    worker_exit_code: int | None = None
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    rss_peak_mb: float = 0.0
    wires_expected: int = 0
    wires_completed: int = 0
    elapsed: float = 0.0
    details: list[str] = field(default_factory=list)

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_after_mb - self.rss_before_mb

    @property
    def problems(self) -> list[str]:
        found = []
        if not self.worker_alive:
            found.append(f"the worker died (exit code {self.worker_exit_code})")
        if sum(self.missed.values()):
            found.append(f"{sum(self.missed.values())} bad messages not dead-lettered")
        if sum(self.misplaced.values()):
            found.append(f"{sum(self.misplaced.values())} dead letters on another topic")
        if self.rss_growth_mb >= RSS_GROWTH_LIMIT_MB:
            found.append(f"worker RSS grew by {self.rss_growth_mb:.1f} MB")
        if self.wires_completed != self.wires_expected:
            found.append(f"{self.wires_expected - self.wires_completed} wires not completed")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "consumed_topics": self.consumed_topics,
            "sent": dict(self.sent),
            "dead_lettered": dict(self.dead_lettered),
            "handled_as_valid": dict(self.handled_valid),
            "missed": dict(self.missed),
            "misplaced": dict(self.misplaced),
            "max_deliveries": dict(self.max_deliveries),
            "publish_failures": dict(self.publish_failures),
            "dlq_by_topic": self.dlq_by_topic,
            "duplicate_dead_letters": self.duplicate_dead_letters,
            "other_dead_letters": self.other_dead_letters,
            "worker_alive": self.worker_alive,
            "worker_exit_code": self.worker_exit_code,
            "rss_before_mb": round(self.rss_before_mb, 1),
            "rss_after_mb": round(self.rss_after_mb, 1),
            "rss_peak_mb": round(self.rss_peak_mb, 1),
            "rss_growth_mb": round(self.rss_growth_mb, 1),
            "wires_expected": self.wires_expected,
            "wires_completed": self.wires_completed,
            "elapsed": round(self.elapsed, 1),
            "ok": self.ok,
        }


def consumed_topics(park_topics: bool = True) -> list[ConsumedTopic]:
    """Every topic the worker consumes: each entity's topics, and for each subscription its
    retry topic and (pulsar-lite) its park topics."""
    mains = [ConsumedTopic(k, s, "") for s in SERVICES for k in SERVICE_TOPICS]
    mains += [ConsumedTopic(k, w, "") for w in WORKFLOWS for k in WORKFLOW_TOPICS]
    found: list[ConsumedTopic] = []
    for m in mains:
        found.append(ConsumedTopic(m.kind, m.entity, m.topic))
        found.append(ConsumedTopic(m.kind, m.entity, f"{m.topic}-{SUBSCRIPTION}-retry"))
        if park_topics:
            for level in range(PARK_LEVELS):
                park = f"{m.topic}-{SUBSCRIPTION}-park-{level}"
                found.append(ConsumedTopic(m.kind, m.entity, park))
    return found


def main_topics(topics: Sequence[ConsumedTopic]) -> list[ConsumedTopic]:
    return [t for t in topics if t.physical == t.topic]


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


class DeadLetterAudit:
    """Reads every dead-letter topic of the consumed topics from the start."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.arrived = asyncio.Event()

    async def handle(self, message: TransportMessage) -> None:
        props = message.properties
        deliveries = props.get(DLQ_DELIVERIES_PROPERTY, "0")
        self.letters.append(
            DeadLetter(
                topic=message.topic,
                fuzz_id=props.get(FUZZ_ID),
                deliveries=int(deliveries) if deliveries.isdigit() else -1,
                error=props.get(DLQ_ERROR_PROPERTY, ""),
            )
        )
        self.arrived.set()

    def fuzz_ids(self) -> set[str]:
        return {d.fuzz_id for d in self.letters if d.fuzz_id is not None}


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


async def run_fuzz(options: FuzzOptions, say: Any = print) -> FuzzReport:
    """Run the fuzz run of ``options`` in its work directory (a temporary one by default)."""
    if options.workdir is None:
        with tempfile.TemporaryDirectory(prefix="infinitic-fuzz-") as directory:
            return await _run(options, Path(directory), say)
    options.workdir.mkdir(parents=True, exist_ok=True)
    return await _run(options, options.workdir, say)


async def _run(options: FuzzOptions, directory: Path, say: Any) -> FuzzReport:
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
        report.details.extend(cluster.log_summary())
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
    options: FuzzOptions, cluster: WorkerCluster, pid: int, report: FuzzReport, say: Any
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
            _tally(report, sent, audit)
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
    dispatch: Any,
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
    say: Any,
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


def _tally(report: FuzzReport, sent: dict[str, Sent], audit: DeadLetterAudit) -> None:
    by_id: dict[str, list[DeadLetter]] = defaultdict(list)
    per_topic: dict[str, Counter[str]] = defaultdict(Counter)
    for letter in audit.letters:
        per_topic[letter.topic]["all"] += 1
        if letter.fuzz_id is None or letter.fuzz_id not in sent:
            report.other_dead_letters += 1
            per_topic[letter.topic]["other"] += 1
            continue
        by_id[letter.fuzz_id].append(letter)
        per_topic[letter.topic]["fuzz"] += 1
    for s in sent.values():
        per_topic[dead_letter_topic(s.target.topic)]["sent"] += 1
    report.dlq_by_topic = {t: dict(c) for t, c in sorted(per_topic.items())}
    examples: dict[str, list[str]] = defaultdict(list)
    for fuzz_id, s in sent.items():
        letters = by_id.get(fuzz_id, [])
        report.duplicate_dead_letters += max(0, len(letters) - 1)
        if letters:
            report.dead_lettered[s.category] += 1
            deliveries = max(d.deliveries for d in letters)
            report.max_deliveries[s.category] = max(report.max_deliveries[s.category], deliveries)
            if any(d.topic != dead_letter_topic(s.target.topic) for d in letters):
                report.misplaced[s.category] += 1
                examples["misplaced"].append(f"{s.category} {s.detail} on {s.target.physical}")
        elif s.valid:
            report.handled_valid[s.category] += 1
        else:
            report.missed[s.category] += 1
            examples["missed"].append(f"{s.category} ({s.detail}) on {s.target.physical}")
    roles = Counter(_role(s.target) for i, s in sent.items() if i not in by_id and not s.valid)
    if roles:
        report.details.append(
            "missed, by kind of topic: " + ", ".join(f"{r} {n}" for r, n in sorted(roles.items()))
        )
        where = Counter(
            s.target.physical for i, s in sent.items() if i not in by_id and not s.valid
        )
        report.details.append(
            "missed, by topic: " + ", ".join(f"{t} {n}" for t, n in where.most_common(8))
        )
    for what, lines in examples.items():
        report.details.append(f"{what} (first {min(10, len(lines))} of {len(lines)}):")
        report.details.extend(f"  {line}" for line in lines[:10])
    others = Counter(d.error[:120] for d in audit.letters if d.fuzz_id is None)
    if others:
        report.details.append("dead letters not sent by the fuzzer (forwarded copies), by reason:")
        report.details.extend(f"  {n} x {reason}" for reason, n in others.most_common(5))


def _role(target: ConsumedTopic) -> str:
    """``topic``, ``retry`` or ``park-<level>``: which of its subscription's topics."""
    if target.physical == target.topic:
        return "topic"
    return target.physical.rsplit(f"-{SUBSCRIPTION}-", 1)[1]


async def _delete_keys(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()


def table(report: FuzzReport) -> str:
    """The report as text tables: by category, by dead-letter topic, then the worker."""
    header = [
        "category",
        "sent",
        "dead-lettered",
        "valid, handled",
        "missed",
        "misplaced",
        "max deliveries",
    ]
    rows = [header]
    for c in (*CATEGORIES, OVERSIZE):
        rows.append(
            [
                c,
                *(
                    str(n)
                    for n in (
                        report.sent[c],
                        report.dead_lettered[c],
                        report.handled_valid[c],
                        report.missed[c],
                        report.misplaced[c],
                        report.max_deliveries[c],
                    )
                ),
            ]
        )
    rows.append(
        [
            "total",
            *(
                str(sum(x.values()))
                for x in (
                    report.sent,
                    report.dead_lettered,
                    report.handled_valid,
                    report.missed,
                    report.misplaced,
                )
            ),
            str(max(report.max_deliveries.values(), default=0)),
        ]
    )
    lines = _grid(rows)
    lines.append("")
    topic_rows: list[list[str]] = [
        ["dead-letter topic", "fuzz sent", "fuzz dead letters", "other dead letters"]
    ]
    for name, counts in report.dlq_by_topic.items():
        topic_rows.append([name, *(str(counts.get(k, 0)) for k in ("sent", "fuzz", "other"))])
    lines.extend(_grid(topic_rows))
    alive = "alive" if report.worker_alive else f"DEAD (exit code {report.worker_exit_code})"
    crashes = 0 if report.worker_alive else 1
    failures = sum(report.publish_failures.values())
    lines += [
        "",
        f"consumed topics: {report.consumed_topics}; worker: {alive}; crashes: {crashes}",
        f"worker RSS: before {report.rss_before_mb:.1f} MB, after {report.rss_after_mb:.1f} MB, "
        f"peak {report.rss_peak_mb:.1f} MB, growth {report.rss_growth_mb:+.1f} MB "
        f"(limit {RSS_GROWTH_LIMIT_MB:.0f})",
        f"real wires completed: {report.wires_completed}/{report.wires_expected}; "
        f"duplicate dead letters: {report.duplicate_dead_letters}; "
        f"publish failures: {failures}; elapsed {report.elapsed:.1f} s; seed {report.seed}",
        "verdict: " + ("OK" if report.ok else "FAILED: " + "; ".join(report.problems)),
    ]
    return "\n".join(lines)


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]


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
