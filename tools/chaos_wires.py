"""Bank wires through a :class:`~chaos_cluster.WorkerCluster` while faults are injected, and
what came out: completed, stuck, lost, wrong, duplicated.

Faults fire at moments drawn from a seeded generator, as fractions of the work done (a fault
at 0.3 fires once the services have run 30 % of the wires' tasks), so they hit a busy cluster
whatever its speed, spread over the run (all the wires run at once, so their results come
late and together). A run ends when every wire has its result, when for ``stall``
seconds no wire completes and no task runs (the rest are stuck or lost), or after
``max_seconds``; the workers are then killed, so what is measured no longer changes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from chaos_bank import OPERATIONS, RedisLedger
from chaos_cluster import WorkerCluster, masked
from infinitic.client import InfiniticClient, WorkflowDeferred
from infinitic.common import decode_message, messages, response_topic
from infinitic.transport import (
    Consumer,
    ConsumerSettings,
    SubscriptionType,
    Transport,
    TransportMessage,
)
from infinitic.workflow_engine import decode_state, state_key
from infinitic_examples.bank_wire.workflows import BankWorkflow

WORKFLOW = "BankWorkflow"

FaultKind = Literal["worker", "broker", "storage"]


@dataclass(frozen=True)
class Fault:
    """One fault: when (a fraction of the wires' tasks run) and what (for ``worker``: which
    one, an index into the running workers)."""

    at: float
    kind: FaultKind
    worker: int = 0


@dataclass(frozen=True)
class FaultPlan:
    """How many faults of each kind a run injects."""

    worker_kills: int = 0
    broker_kills: int = 0
    storage_restarts: int = 0

    def schedule(self, rng: random.Random, workers: int) -> list[Fault]:
        """The faults in the order they fire, at moments between 5 % and 95 % of the work."""
        faults: list[Fault] = []
        for _ in range(self.worker_kills):
            faults.append(Fault(rng.uniform(0.05, 0.95), "worker", rng.randrange(workers)))
        kinds: list[tuple[FaultKind, int]] = [
            ("broker", self.broker_kills),
            ("storage", self.storage_restarts),
        ]
        for kind, count in kinds:
            faults.extend(Fault(rng.uniform(0.05, 0.95), kind) for _ in range(count))
        return sorted(faults, key=lambda f: f.at)

    @property
    def count(self) -> int:
        return self.worker_kills + self.broker_kills + self.storage_restarts


@dataclass
class WireReport:
    """The outcome of a run (the columns of the chaos tool's table).

    Attributes:
        completed: wires with an outcome (a result or an error).
        stuck: wires without an outcome whose state is still stored.
        lost: wires without an outcome and without a stored state.
        wrong: wires with an error, an unexpected result, or balances that differ from the
            money moves recorded for them (a completed wire must have moved both amounts).
        duplicated_results: outcome messages sent to the client beyond one per wire.
        duplicated_executions: task executions beyond one per wire and operation.
        leftover_states: stored states of completed wires (a completed workflow is deleted).
        worker_starts: worker processes started (the first ones included).
        faults: faults injected, out of ``faults_planned``.
        broker_heals: self-healing restarts of the embedded broker (after connection resets).
        details: what the stuck, lost and wrong wires look like, and the workers' log errors.
    """

    storage: str
    wires: int
    completed: int = 0
    stuck: int = 0
    lost: int = 0
    wrong: int = 0
    duplicated_results: int = 0
    duplicated_executions: int = 0
    leftover_states: int = 0
    elapsed: float = 0.0
    worker_starts: int = 0
    faults: int = 0
    faults_planned: int = 0
    broker_heals: int = 0
    seed: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.stuck == self.lost == self.wrong == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "elapsed": round(self.elapsed, 2), "ok": self.ok}


def expected_result(workflow_id: str, index: int) -> str:
    return f"{workflow_id}:email-w{index}-0"


def amount(index: int) -> int:
    """Each wire moves its own amount between its own two accounts, so a mix-up shows."""
    return 1 + index % 50


class ResultAudit:
    """Counts the outcome messages sent to a client, on a subscription of its own to the
    client's response topic (broker redeliveries of one message count once)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, set[str]] = {}

    async def subscribe(self, transport: Transport, client_name: str) -> Consumer:
        return await transport.subscribe(
            response_topic(client_name),
            "chaos-audit",
            self._on_message,
            ConsumerSettings(type=SubscriptionType.SHARED, concurrency=4),
        )

    async def _on_message(self, message: TransportMessage) -> None:
        decoded = decode_message(message.data)
        if isinstance(decoded, messages.MethodOutcome):
            self.outcomes.setdefault(decoded.workflow_id, set()).add(message.message_id)

    def duplicates(self) -> int:
        return sum(len(ids) - 1 for ids in self.outcomes.values())


async def run_wires(
    cluster: WorkerCluster,
    *,
    label: str,
    wires: int,
    workers: int,
    plan: FaultPlan,
    seed: int,
    stall: float,
    max_seconds: float,
    restart_storage: Callable[[], Awaitable[None]] | None = None,
    say: Callable[[str], None] = print,
) -> WireReport:
    """Start ``workers`` worker processes, dispatch ``wires`` wires, inject the faults of
    ``plan`` and measure the outcome (``label`` names the run in the report)."""
    if plan.storage_restarts and restart_storage is None:
        raise ValueError("a plan with storage restarts needs restart_storage")
    faults = plan.schedule(random.Random(seed), workers)
    report = WireReport(label, wires, faults_planned=len(faults), seed=seed)
    tasks = len(OPERATIONS) * wires
    transport = cluster.transport()
    ledger = cluster.ledger()
    audit = ResultAudit()
    waiting: list[asyncio.Task[str]] = []
    for _ in range(workers):
        cluster.start_worker()
    try:
        async with InfiniticClient(transport=transport) as client:
            consumer = await audit.subscribe(transport, client.name)
            started = time.monotonic()
            deferreds = await _dispatch(client, wires)
            waiting.extend(asyncio.ensure_future(d.result()) for d in deferreds)

            async def inject(fault: Fault) -> None:
                if fault.kind == "worker":
                    pid = cluster.kill_worker(fault.worker % len(cluster.processes))
                    cluster.start_worker()
                    what = f"SIGKILLed worker {pid}, started another"
                elif fault.kind == "broker":
                    await cluster.restart_broker()
                    what = "SIGKILLed the broker, restarted it on its data"
                else:
                    assert restart_storage is not None
                    await restart_storage()
                    what = f"crashed and restarted {label}"
                done = sum(w.done() for w in waiting)
                ran = await ledger.total_executions()
                say(
                    f"  [{time.monotonic() - started:6.1f}s] {ran}/{tasks} tasks run, "
                    f"{done}/{wires} wires done: {what}"
                )

            report.faults = await _follow(
                waiting, faults, inject, ledger.total_executions, tasks, stall, max_seconds
            )
            report.elapsed = time.monotonic() - started
            if report.faults == len(faults) and all(w.done() for w in waiting):
                await asyncio.sleep(0.5)  # late duplicated outcomes
            cluster.kill_all()  # what is measured no longer changes
            await _measure(report, cluster, deferreds, waiting, ledger)
            report.duplicated_results = audit.duplicates()
            await consumer.close()
    finally:
        # closing the client ended the waits of the stuck wires (with an error)
        await asyncio.gather(*waiting, return_exceptions=True)
        await transport.close()
        await ledger.close()
    report.worker_starts = cluster.starts
    report.broker_heals = cluster.broker.restarts
    if not report.ok:
        report.details.extend(cluster.log_summary())
    return report


async def _dispatch(client: InfiniticClient, wires: int) -> list[WorkflowDeferred[str]]:
    async def one(i: int) -> WorkflowDeferred[str]:
        wf = client.new_workflow(BankWorkflow)
        return await client.dispatch(wf.wire, f"w{i}", f"src{i}", f"dst{i}", amount(i))

    deferreds: list[WorkflowDeferred[str]] = []
    for start in range(0, wires, 50):  # 50 publishes in flight
        batch = range(start, min(start + 50, wires))
        deferreds.extend(await asyncio.gather(*(one(i) for i in batch)))
    return deferreds


async def _follow(
    waiting: Sequence[asyncio.Future[str]],
    faults: list[Fault],
    inject: Callable[[Fault], Awaitable[None]],
    executions: Callable[[], Awaitable[int]],
    tasks: int,
    stall: float,
    max_seconds: float,
) -> int:
    """Wait for the wires, injecting each fault once its share of the ``tasks`` has run;
    return how many faults were injected. Stops when every wire is done, when for ``stall`` seconds
    (fault injection time excluded) no wire completed and no task ran (``executions`` counts
    them), or after ``max_seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    last_progress = loop.time()
    pending = {w for w in waiting if not w.done()}
    injected = 0
    ran = await executions()
    while pending and loop.time() < deadline:
        done, pending = await asyncio.wait(pending, timeout=0.2)
        ran, before = await executions(), ran
        if done or ran != before:
            last_progress = loop.time()
        while injected < len(faults) and ran >= faults[injected].at * tasks:
            await inject(faults[injected])
            injected += 1
            last_progress = loop.time()
        if loop.time() - last_progress >= stall:
            break
    return injected


async def _measure(
    report: WireReport,
    cluster: WorkerCluster,
    deferreds: list[WorkflowDeferred[str]],
    waiting: Sequence[asyncio.Future[str]],
    ledger: RedisLedger,
) -> None:
    storage = cluster.open_storage()
    try:
        keys = [state_key(WORKFLOW, d.id) for d in deferreds]
        states = await storage.key_value.get_many(keys)
    finally:
        await storage.close()
    balances = await ledger.balances()
    moves = await ledger.moves()
    runs = await ledger.executions()
    report.duplicated_executions = sum(max(0, n - 1) for n in runs.values())
    missing: list[int] = []
    for i, (d, w) in enumerate(zip(deferreds, waiting, strict=True)):
        wire = f"w{i}"
        moved = {op for op in ("withdraw", "deposit") if (wire, op) in moves}
        problem = ""
        if w.done():
            report.completed += 1
            report.leftover_states += keys[i] in states
            if w.exception() is not None:
                problem = f"failed: {w.exception()!r}"
            elif w.result() != expected_result(d.id, i):
                problem = f"result {w.result()!r}, expected {expected_result(d.id, i)!r}"
            elif len(moved) < 2:
                problem = f"completed, but moved money only for {sorted(moved)}"
        else:
            missing.append(i)
            if keys[i] in states:
                report.stuck += 1
            else:
                report.lost += 1
        want = {
            f"src{i}": -amount(i) if "withdraw" in moved else 0,
            f"dst{i}": amount(i) if "deposit" in moved else 0,
        }
        got = {a: balances.get(a, 0) for a in want}
        if not problem and got != want:
            problem = f"balances {got}, expected {want} for the moves {sorted(moved)}"
        if problem:
            report.wrong += 1
            if report.wrong <= 5:
                report.details.append(f"wrong {wire} ({d.id}): {problem}")
    shapes: Counter[str] = Counter()
    for n, i in enumerate(missing):
        d = deferreds[i]
        counts = ", ".join(f"{op}={runs.get((f'w{i}', op), 0)}" for op in OPERATIONS)
        stored = states.get(keys[i])
        if stored is None:
            line = f"ran {counts}; no state"
        else:
            line = f"ran {counts}; v{stored.version} {describe_state(keys[i], stored.value)}"
        shapes[masked(line)] += 1
        if n < 5:
            kind = "lost" if stored is None else "stuck"
            report.details.append(f"{kind} w{i} ({d.id}): {line}")
    if len(missing) > 5:
        report.details.append("all unfinished wires, by shape (ids and numbers masked):")
        report.details.extend(f"{count:6d} x {shape}" for shape, count in shapes.most_common(8))


def describe_state(key: str, data: bytes) -> str:
    """The non-default fields of a stored workflow state, compactly (whatever its model)."""
    try:
        state = decode_state(key, data)
    except Exception as e:
        return f"undecodable state: {e!r}"
    skip = {"workflow_name", "workflow_id", "incarnation", "meta", "inline_digest"}
    fields = state.model_dump(exclude_defaults=True, exclude=skip)
    return " ".join(f"{name}={_compact(value)}" for name, value in fields.items())


_NAMES = ("kind", "service_name", "method_name", "name", "status", "message_type", "type")


def _compact(value: Any, depth: int = 0) -> str:
    """Lists and mappings of records shown by their telling fields (kind, names, status)."""
    if isinstance(value, dict):
        if any(k in value for k in _NAMES):
            return "(" + ",".join(str(value[k]) for k in _NAMES if value.get(k)) + ")"
        if depth > 1:
            return f"{{{len(value)} keys}}"
        return "{" + ", ".join(_compact(v, depth + 1) for v in value.values()) + "}"
    if isinstance(value, list):
        shown = [_compact(v, depth + 1) for v in value[:8]]
        return "[" + ", ".join(shown) + (f", +{len(value) - 8}" if len(value) > 8 else "") + "]"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
