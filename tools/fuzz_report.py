"""What a fuzz run (tools/fuzz.py) found: the dead letters read back, what became of each
message sent, and the report's tables."""

from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_cluster import masked
from fuzz_messages import CATEGORIES, FUZZ_ID, OVERSIZE, SUBSCRIPTION, ConsumedTopic
from infinitic.transport import (
    DLQ_DELIVERIES_PROPERTY,
    DLQ_ERROR_PROPERTY,
    TransportMessage,
    dead_letter_topic,
)

RSS_GROWTH_LIMIT_MB = 50.0
# the worker log's format (infinitic.worker.cli): "<date> <time> LEVEL logger: message"
_LOG_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<logger>\S+): (?P<message>.*)$")
_TOPIC = re.compile(r"\b[a-z-]+:[A-Za-z0-9_.-]+")
_ID = re.compile(r"[^\s()]*[0-9N][^\s()]*[0-9N][^\s()]{6,}")  # ids, mutated ones included
# what every bad message is expected to log
_EXPECTED = re.compile(
    r"dead-lettered after \d+ deliveries|: nothing waits for it|keeps nothing on disk"
)


@dataclass
class Sent:
    """What the run remembers of a published fuzz message (its data is not kept)."""

    category: str
    target: ConsumedTopic
    detail: str
    valid: bool  # a mutant that decodes into a message its handler accepts


@dataclass
class DeadLetter:
    """A message read back from a dead-letter topic."""

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


def tally(report: FuzzReport, sent: dict[str, Sent], audit: DeadLetterAudit) -> None:
    """Fill ``report`` with what became of each message ``sent``, as ``audit`` read it."""
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
    roles = Counter(role(s.target) for i, s in sent.items() if i not in by_id and not s.valid)
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


def role(target: ConsumedTopic) -> str:
    """``topic``, ``retry`` or ``park-<level>``: which of its subscription's topics."""
    if target.physical == target.topic:
        return "topic"
    return target.physical.rsplit(f"-{SUBSCRIPTION}-", 1)[1]


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


def log_surprises(log: Path, limit: int = 12) -> list[str]:
    """The worker log's errors and warnings other than those every bad message causes (its
    dead letter, nothing waiting for it), alike lines counted together, with the first line
    of a traceback's last frame."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    kinds: Counter[str] = Counter()
    for i, line in enumerate(lines):
        found = _LOG_LINE.match(line)
        if not found or found["level"] not in ("ERROR", "CRITICAL", "WARNING"):
            continue
        if _EXPECTED.search(found["message"]):
            continue
        message = _ID.sub("<id>", _TOPIC.sub("<topic>", masked(found["message"])))
        text = f"{found['level']} {found['logger']}: {message[:160]}"
        # a logged exception: its last line says what was raised
        j = i + 1
        while j < len(lines) and not _LOG_LINE.match(lines[j]):
            j += 1
        if j > i + 1 and lines[j - 1].strip():
            text += f" [{masked(lines[j - 1].strip())[:100]}]"
        kinds[text] += 1
    if not kinds:
        return [f"worker log {log}: no error or warning beyond the dead letters"]
    shown = [f"{count:6d} x {text}" for text, count in kinds.most_common(limit)]
    return [f"worker log {log}, errors and warnings beyond the dead letters:", *shown]
