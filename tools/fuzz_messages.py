"""The topics a fuzz run (tools/fuzz.py) targets, its hostile messages by category, and what
each consumed topic's handler accepts.

Every message is bad: it cannot be decoded, its kind is one the topic's handler refuses, or its
transport properties are impossible, so it must end in the topic's dead-letter twin. The one
exception is a mutated envelope that still decodes into a message the handler accepts: that is
a valid message (see :func:`accepted`), handled like any other, and reported apart.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from infinitic.common import (
    ENGINE_SUBSCRIPTION,
    SERVICE_TOPICS,
    WORKFLOW_TOPICS,
    TopicKind,
    encode_message,
    pack,
    topic,
)
from infinitic.common.messages import (
    CommandResult,
    DispatchWorkflow,
    ExecuteTask,
    ExecuteWorkflowTask,
    Message,
    MethodOutcome,
    Requester,
    TaskOutcome,
    WorkflowMessage,
    WorkflowTaskCompleted,
    WorkflowTaskFailed,
)
from infinitic.common.tag_messages import (
    AddTagToTask,
    AddTagToWorkflow,
    TaskTagMessage,
    WorkflowTagMessage,
)

#: The user property naming each fuzz message (user properties reach the dead-letter copy).
FUZZ_ID = "x-fuzz-id"
#: The transport properties a publisher can forge (see transport_pulsar._envelope).
ATTEMPTS = "x-infinitic-t-attempts"
DELIVER_AT = "x-infinitic-t-deliver-at"
ORIGIN_TOPIC = "x-infinitic-t-origin-topic"
PARKED_AT = "x-infinitic-t-parked-at"
FORGED_NUMBERS = ["-1", "-9999999999999", "abc", "1e9", "", " 5", "+5", "٣", "5_000", "0x10"]
FORGED_HUGE = ["99999999999999999999", "9" * 40, "32503680000001"]

CATEGORIES = (
    "random-bytes",
    "empty",
    "msgpack-wrong-shape",
    "wrong-kind",
    "mutated",
    "forged-property",
)
OVERSIZE = "oversize"
#: Where the client refuses a message published whole (pulsar-lite 0.2.0: 5,232,605 bytes of
#: payload and metadata); an oversize message stays this far below.
NEAR_LIMIT_BYTES = 5_232_000
CHUNKED_BYTES = 10 * 1024 * 1024
SERVICES = ("BankService", "EmailService")
WORKFLOWS = ("BankWorkflow",)
SUBSCRIPTION = ENGINE_SUBSCRIPTION  # the workers' subscription
PARK_LEVELS = 8  # park topics per subscription on pulsar-lite (transport_pulsar._parking)
NOBODY = Requester.client("fuzz-nobody")  # a client that never reads its responses
OTHER_WORKFLOW = "FuzzWorkflow"  # names no registered entity
OTHER_SERVICE = "FuzzService"


@dataclass(frozen=True)
class ConsumedTopic:
    """A topic the worker consumes: the entity's topic itself, its subscription's retry topic
    or one of its park topics (``physical`` is the one published to, ``topic`` the logical one
    whose handler and dead-letter twin apply)."""

    kind: TopicKind
    entity: str
    physical: str

    @property
    def topic(self) -> str:
        return topic(self.kind, self.entity)


@dataclass
class FuzzMessage:
    """One message to publish, and what should become of it."""

    id: str
    category: str
    target: ConsumedTopic
    data: bytes
    key: str | None
    properties: dict[str, str] = field(default_factory=dict)
    detail: str = ""
    chunked: bool = False


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


def accepted(kind: TopicKind, entity: str, message: Message) -> bool:
    """True when the handler of ``kind`` for ``entity`` takes ``message`` as a message to act
    on (it may still fail and dead-letter it); False when it refuses it by type or name."""
    if kind in (TopicKind.TASK_EXECUTOR, TopicKind.TASK_RETRY):
        return isinstance(message, ExecuteTask)
    if kind is TopicKind.TASK_EVENTS:
        return isinstance(message, TaskOutcome)
    if kind is TopicKind.TASK_TAG:
        return isinstance(message, TaskTagMessage) and message.service_name == entity
    if kind is TopicKind.WORKFLOW_TAG:
        return isinstance(message, WorkflowTagMessage) and message.workflow_name == entity
    if kind in (TopicKind.WORKFLOW_CMD, TopicKind.WORKFLOW_ENGINE):
        return isinstance(message, WorkflowMessage) and message.workflow_name == entity
    if kind is TopicKind.WORKFLOW_DELAY:
        return isinstance(message, WorkflowMessage)
    if kind is TopicKind.WORKFLOW_EVENTS:
        return isinstance(message, MethodOutcome)
    if kind is TopicKind.WORKFLOW_TASK_EXECUTOR:
        return isinstance(message, ExecuteWorkflowTask)
    return isinstance(message, WorkflowTaskCompleted | WorkflowTaskFailed)


def _id() -> str:
    return uuid.uuid4().hex


def _task(service: str, method: str, args: list[object]) -> ExecuteTask:
    return ExecuteTask(
        task_id=_id(), service_name=service, method_name=method, method_args=args, requester=NOBODY
    )


def valid_message(kind: TopicKind, entity: str) -> Message:
    """A message the handler of ``kind`` accepts and that changes nothing anyone waits for
    (ids of no instance, outcomes for a client that never reads them): the base of mutations."""
    wid = _id()
    if kind in (TopicKind.TASK_EXECUTOR, TopicKind.TASK_RETRY):
        if entity == "BankService":
            return _task(entity, "withdraw", [f"fuzz-{wid}", "fuzz-account", 1])
        return _task(entity, "send", [f"fuzz-{wid}", "fuzz@example.com", "fuzz"])
    if kind is TopicKind.TASK_EVENTS:
        return TaskOutcome(
            task_id=wid,
            service_name=entity,
            method_name="send",
            status="completed",
            value="x",
            requester=NOBODY,
        )
    if kind is TopicKind.TASK_TAG:
        return AddTagToTask(service_name=entity, tag="fuzz-tag", task_id=wid)
    if kind is TopicKind.WORKFLOW_TAG:
        return AddTagToWorkflow(workflow_name=entity, tag="fuzz-tag", workflow_id=wid)
    if kind is TopicKind.WORKFLOW_EVENTS:
        return MethodOutcome(
            workflow_name=entity,
            workflow_id=wid,
            method_run_id=wid,
            method_name="wire",
            status="completed",
            value="x",
        )
    if kind is TopicKind.WORKFLOW_TASK_EXECUTOR:
        return ExecuteWorkflowTask(
            workflow_name=entity,
            workflow_id=wid,
            workflow_task_id=_id(),
            method_runs=[],
            steps=[],
            commands=[],
        )
    if kind is TopicKind.WORKFLOW_TASK_EVENTS:
        return WorkflowTaskFailed(
            workflow_name=entity,
            workflow_id=wid,
            workflow_task_id=_id(),
            step=0,
            failure={"kind": "remote", "message": "fuzz"},  # type: ignore[arg-type]
        )
    return CommandResult(
        workflow_name=entity, workflow_id=wid, command_id=_id(), status="completed"
    )


def _wrong_kind_pool(entity: str) -> list[Message]:
    wid = _id()
    return [
        _task(OTHER_SERVICE, "run", [1, "two"]),
        TaskOutcome(
            task_id=wid,
            service_name=OTHER_SERVICE,
            method_name="run",
            status="failed",
            requester=NOBODY,
        ),
        AddTagToTask(service_name=OTHER_SERVICE, tag="t", task_id=wid),
        AddTagToWorkflow(workflow_name=OTHER_WORKFLOW, tag="t", workflow_id=wid),
        CommandResult(
            workflow_name=OTHER_WORKFLOW, workflow_id=wid, command_id=wid, status="failed"
        ),
        DispatchWorkflow(
            workflow_name=OTHER_WORKFLOW,
            workflow_id=wid,
            method_name="run",
            method_args=[],
            requester=NOBODY,
        ),
        MethodOutcome(
            workflow_name=entity,
            workflow_id=wid,
            method_run_id=wid,
            method_name="wire",
            status="completed",
        ),
        ExecuteWorkflowTask(
            workflow_name=entity,
            workflow_id=wid,
            workflow_task_id=wid,
            method_runs=[],
            steps=[],
            commands=[],
        ),
        WorkflowTaskCompleted(workflow_name=entity, workflow_id=wid, workflow_task_id=wid, step=3),
    ]


def wrong_kind_message(rng: random.Random, kind: TopicKind, entity: str) -> Message:
    """A valid Infinitic message that the handler of ``kind`` for ``entity`` refuses."""
    pool = [m for m in _wrong_kind_pool(entity) if not accepted(kind, entity, m)]
    return rng.choice(pool)


def _wrong_shapes(rng: random.Random) -> list[object]:
    return [
        rng.randrange(-(2**63), 2**63),
        "an envelope?",
        [1, 2, 3],
        {},
        {"t": "ExecuteTask"},
        {"b": {}},
        {"v": 2, "t": "ExecuteTask", "b": {}},
        {"v": 1, "t": "NoSuchMessage", "b": {}},
        {"v": 1, "t": 7, "b": {}},
        {"v": 1, "t": "ExecuteTask", "b": {"task_id": 5}},
        {"v": 1, "t": "DispatchWorkflow", "b": []},
        {"v": 1, "t": "CommandResult", "b": {"workflow_name": "x", "status": "weird"}},
        None,
        rng.random(),
        b"\x00" * rng.randrange(100),
    ]


def mutate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Bit flips, a truncation, an inserted or overwritten byte (one or two of them)."""
    out = bytearray(data)
    done: list[str] = []
    for _ in range(rng.choice((1, 1, 2))):
        op = rng.choice(("flip", "flip", "truncate", "insert", "overwrite"))
        if op == "flip" or not out:
            bits = rng.randint(1, 8)
            for _ in range(bits):
                if out:
                    i = rng.randrange(len(out))
                    out[i] ^= 1 << rng.randrange(8)
            done.append(f"{bits} bit flips")
        elif op == "truncate":
            cut = rng.randrange(len(out))
            del out[cut:]
            done.append(f"truncated at {cut}")
        elif op == "insert":
            out.insert(rng.randrange(len(out) + 1), rng.randrange(256))
            done.append("byte inserted")
        else:
            out[rng.randrange(len(out))] = rng.randrange(256)
            done.append("byte overwritten")
    return bytes(out), ", ".join(done)


def _key(rng: random.Random, target: ConsumedTopic) -> str | None:
    chance = 0.6 if target.kind.keyed else 0.2
    if rng.random() >= chance:
        return None
    return rng.choice((_id(), "k", "ключ-🔑", "x" * 1000, " "))


def _garbage(rng: random.Random) -> bytes:
    size = rng.choice((1, 7, 64, 512, 4096, rng.randrange(1, 65536)))
    return rng.randbytes(size)


def _forged(
    rng: random.Random, target: ConsumedTopic, others: list[ConsumedTopic]
) -> tuple[dict[str, str], str, bytes]:
    name = rng.choice((ATTEMPTS, DELIVER_AT, PARKED_AT, ORIGIN_TOPIC))
    if name == ORIGIN_TOPIC:
        # Not a number: it must not move the dead letter elsewhere; the payload is garbage.
        value = rng.choice(
            (rng.choice(others).topic, "response:some-client", "", "\x00" * 8, "y" * 100_000)
        )
        return {name: value}, f"{name}={value[:40]!r}", _garbage(rng)
    value = rng.choice(FORGED_NUMBERS + FORGED_HUGE)
    # An impossible property dead-letters at once, even a valid message.
    data = (
        encode_message(valid_message(target.kind, target.entity))
        if rng.random() < 0.5
        else _garbage(rng)
    )
    return {name: value}, f"{name}={value[:40]!r}", data


def build(
    rng: random.Random, category: str, target: ConsumedTopic, topics: list[ConsumedTopic]
) -> FuzzMessage:
    """A message of ``category`` (one of :data:`CATEGORIES`) for ``target``."""
    message = FuzzMessage(_id(), category, target, b"", _key(rng, target))
    if category == "random-bytes":
        message.data = _garbage(rng)
    elif category == "empty":
        message.data = b""
    elif category == "msgpack-wrong-shape":
        shape = rng.choice(_wrong_shapes(rng))
        message.data = pack(shape)
        message.detail = repr(shape)[:60]
    elif category == "wrong-kind":
        wrong = wrong_kind_message(rng, target.kind, target.entity)
        message.data = encode_message(wrong)
        message.detail = wrong.TYPE
    elif category == "mutated":
        base = (
            valid_message(target.kind, target.entity)
            if rng.random() < 0.7
            else wrong_kind_message(rng, target.kind, target.entity)
        )
        message.data, how = mutate(rng, encode_message(base))
        message.detail = f"{base.TYPE}: {how}"
    elif category == "forged-property":
        message.properties, message.detail, message.data = _forged(rng, target, topics)
    else:
        raise ValueError(f"unknown fuzz category {category!r}")
    message.properties[FUZZ_ID] = message.id
    return message


def oversize(
    rng: random.Random, target: ConsumedTopic, *, chunked: bool, keyed: bool
) -> FuzzMessage:
    """Garbage just under the broker's limit, or a 10 MB one for a chunking producer."""
    size = CHUNKED_BYTES if chunked else NEAR_LIMIT_BYTES
    # Mostly zeros (cheap to make), random at both ends so nothing mistakes it for padding.
    data = rng.randbytes(64) + bytes(size - 128) + rng.randbytes(64)
    key = _id() if keyed else None
    detail = (
        f"{size:,} bytes, {'chunked' if chunked else 'whole'}, {'keyed' if keyed else 'unkeyed'}"
    )
    message = FuzzMessage(_id(), OVERSIZE, target, data, key, detail=detail, chunked=chunked)
    message.properties[FUZZ_ID] = message.id
    return message
