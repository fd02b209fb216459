"""Event records: what the engines did, published for event listeners (issue 13).

A component that handles a message (the workflow state engine, a workflow executor, a service
executor) hands, in the same cycle as its other messages, an :class:`EventPart` to the
:class:`EventEmitter` of its own events topic: a compact record of each thing it did. The
emitter publishes the parts of the cycles sending at once together, as one :class:`EventBatch`.
Nothing in Infinitic consumes these topics: event listeners read them with their own
subscription and build the CloudEvents there, so the engines pay only for a few tuples, one
msgpack call per handled message and a share of a publish.

Records are tuples (msgpack packs them as arrays; they decode as :class:`EventRecord`): the
CloudEvent type, its subject (a workflow or task id), the component that emitted it and
Infinitic's data fields (camelCase keys, JSON-compatible values except bytes). Their time is the
batch's (``emitted_at``, when it is published), as Infinitic's events carry their publishing
time.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, NamedTuple

import msgpack

from infinitic.common._failures import FailureInfo
from infinitic.common._messages import ENVELOPE_VERSION, Message, register_message
from infinitic.common._serialization import array_header, map_header, pack, unpackable
from infinitic.common._topics import check_entity_name

WORKFLOW_TYPE = "infinitic.workflow."
TASK_TYPE = "infinitic.task."

#: Data fields that may hold a user payload (arguments, results, signal data): dropped from the
#: records of a batch that would be too large to publish (the record then says ``truncated``).
PAYLOAD_FIELDS = ("methodArgs", "taskArgs", "result", "output", "signalData")


class EventComponent(enum.StrEnum):
    """The component an event comes from, as the CloudEvent ``source`` names it after the
    transport and namespace."""

    STATE_ENGINE = "workflows/stateEngine"
    WORKFLOW_EXECUTOR = "workflows/executor"
    SERVICE_EXECUTOR = "services/executor"


_STATE_ENGINE = EventComponent.STATE_ENGINE.value


class EventTopic(enum.Enum):
    """The events topics: written by one kind of component, consumed by event listeners only."""

    WORKFLOW_STATE = "workflow-state-events"
    WORKFLOW_EXECUTOR = "workflow-executor-events"
    SERVICE_EXECUTOR = "service-executor-events"

    def of(self, entity: str) -> str:
        """The topic of this kind for the workflow or service named ``entity``."""
        return f"{self.value}:{check_entity_name(entity)}"


def workflow_event_topics(workflow_name: str) -> list[str]:
    """The events topics of a workflow (its state engines' and its executors')."""
    return [
        EventTopic.WORKFLOW_STATE.of(workflow_name),
        EventTopic.WORKFLOW_EXECUTOR.of(workflow_name),
    ]


def service_event_topics(service_name: str) -> list[str]:
    """The events topic of a service (its executors')."""
    return [EventTopic.SERVICE_EXECUTOR.of(service_name)]


class EventRecord(NamedTuple):
    """One event, as an engine records it.

    Attributes:
        type: the CloudEvent type (``infinitic.workflow.taskDispatched``...).
        subject: the workflow id (workflow events) or the task id (task events).
        component: an :class:`EventComponent` value.
        data: Infinitic's data fields of that type (without ``workerName`` and
            ``infiniticVersion``, which the batch carries once).
    """

    type: str
    subject: str
    component: str
    data: dict[str, Any]


class EventPart(NamedTuple):
    """The events of one handled message (one cycle of one component).

    Attributes:
        message_id: the handled message's id; event ``i`` has the id ``f"{message_id}-{i}"``,
            so a message handled again (at-least-once) gives the same ids and a listener can
            drop the duplicates.
        events: the records, in the order the cycle did them.
    """

    message_id: str
    events: list[EventRecord]


@register_message
class EventBatch(Message):
    """The events of the cycles of one component of one worker that sent in the same turn of
    the event loop, published at ``emitted_at`` (the time of all its events; its
    ``message_id`` is not sent: the parts name the handled messages)."""

    TYPE: ClassVar[str] = "event_batch"

    entity_name: str
    worker_name: str
    version: str = ""
    parts: list[EventPart]


#: A record as the engines make it: a plain tuple (type, subject, component, data), packed as
#: the :class:`EventRecord` it decodes to (a named tuple costs a Python call to build).
RawRecord = tuple[str, str, str, dict[str, Any]]


class EventRecorder:
    """Gathers the records of one handled message (one per cycle; cheap: a list of tuples)."""

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: list[RawRecord] = []

    def workflow(self, name: str, subject: str, data: dict[str, Any]) -> None:
        """Record ``infinitic.workflow.<name>`` from the state engine."""
        self.records.append((WORKFLOW_TYPE + name, subject, _STATE_ENGINE, data))

    def task(self, name: str, subject: str, component: str, data: dict[str, Any]) -> None:
        """Record ``infinitic.task.<name>`` from a service or workflow executor."""
        self.records.append((TASK_TYPE + name, subject, component, data))


#: Publishes of one emitter under way at once, at most: the parts handed in meanwhile wait and
#: go out together (more publishes in flight: shorter waits, more and smaller messages).
PUBLISHES_IN_FLIGHT = 2

#: Publishes bytes on a topic (a transport's ``publish``).
Publish = Callable[[str, bytes], Awaitable[None]]


class EventEmitter:
    """Encodes and publishes the events of one component of one worker for one service or
    workflow.

    A cycle encodes its records as an :class:`EventPart` (:meth:`encode`, one msgpack call) and
    hands it to :meth:`publish`. Parts are published together (a group commit) in
    :class:`EventBatch` messages, at most :data:`PUBLISHES_IN_FLIGHT` at a time: the parts
    handed in while fewer are under way go out on the next turn of the event loop, those handed
    in meanwhile go out together once one is done (the busier the worker, the more parts a
    message holds). Each
    cycle awaits the publish of its part before it stores its state and acknowledges its
    message, so grouping weakens no guarantee. What never changes (the envelope, the entity,
    the worker, the version) is packed once.

    Args:
        topic: the events topic (see :class:`EventTopic`).
        entity_name: the service or workflow.
        worker_name: the worker's name (``workerName`` in the CloudEvents' data).
        version: the library version (``infiniticVersion``).
        publish: publishes a message on the topic (the transport's ``publish``).
    """

    __slots__ = (
        "_group",
        "_max_bytes",
        "_packer",
        "_prefix",
        "_publish",
        "_sending",
        "entity_name",
        "topic",
        "version",
        "worker_name",
    )

    def __init__(
        self, topic: str, entity_name: str, worker_name: str, version: str, publish: Publish
    ) -> None:
        self.topic = topic
        self.entity_name = entity_name
        self.worker_name = worker_name
        self.version = version
        self._publish = publish
        self._packer = msgpack.Packer(use_bin_type=True, datetime=False, autoreset=True)
        envelope = map_header(3) + pack("v") + pack(ENVELOPE_VERSION) + pack("t")
        envelope += pack(EventBatch.TYPE) + pack("b") + map_header(5)
        for key, value in (("entity_name", entity_name), ("worker_name", worker_name)):
            envelope += pack(key) + pack(value)
        self._prefix = envelope + pack("version") + pack(version) + pack("emitted_at")
        self._group: _Group | None = None  # the parts not sent yet
        self._max_bytes: int | None = None  # the transport's limit, as the cycles gave it
        self._sending: set[asyncio.Task[None]] = set()  # the publishes under way

    def encode(
        self, handled_message_id: str, records: Sequence[RawRecord], max_bytes: int | None
    ) -> bytes:
        """The msgpack bytes of the :class:`EventPart` of ``records``, for :meth:`publish`.

        A part that would make a message over ``max_bytes`` (the transport's limit) is encoded
        again without the user payloads (:data:`PAYLOAD_FIELDS`), then without data: an event
        never makes its engine's cycle fail. So is a part holding a value msgpack cannot encode
        (it is logged by the engine's own encoding of the message that carries the value).
        """
        p = self._packer
        try:
            data: bytes = p.pack((handled_message_id, records))
        except Exception:  # a value msgpack refuses: drop the data rather than the cycle
            records = [(*r[:3], {"truncated": True, "why": _why(r[3])}) for r in records]
            data = p.pack((handled_message_id, records))
        self._max_bytes = max_bytes
        if max_bytes is not None and len(data) > max_bytes - self._overhead():
            records = [(*r[:3], _without_payloads(r[3])) for r in records]
            data = p.pack((handled_message_id, records))
            if len(data) > max_bytes - self._overhead():  # still too large: types and ids only
                records = [(*r[:3], {"truncated": True}) for r in records]
                data = p.pack((handled_message_id, records))
        return data

    def _overhead(self) -> int:
        """The bytes of a message besides its parts, at most."""
        return len(self._prefix) + 32

    def publish(self, part: bytes) -> asyncio.Future[None]:
        """Publish ``part`` (from :meth:`encode`) with the other parts handed in meanwhile.

        Returns:
            A future of this part alone (a cycle canceled while it waits leaves the other
            parts' publish alone), done once the message holding ``part`` is published (its
            exception: the publish failed, the handled message must come again).
        """
        loop = asyncio.get_running_loop()
        group = self._group
        if group is None:
            group = self._group = _Group()
            if len(self._sending) < PUBLISHES_IN_FLIGHT:
                loop.call_soon(self._flush)
            # else: sent when a publish under way is done (see _sent)
        group.parts.append(part)
        done: asyncio.Future[None] = loop.create_future()
        group.waiters.append(done)
        return done

    def _flush(self) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        task = asyncio.ensure_future(self._send(group))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        """A publish is done: the parts handed in while too many were under way go now."""
        self._sending.discard(task)
        if self._group is not None and len(self._sending) < PUBLISHES_IN_FLIGHT:
            self._flush()

    async def _send(self, group: _Group) -> None:
        try:
            for message in self._messages(group.parts):
                await self._publish(self.topic, message)
        except BaseException as e:
            error = e if isinstance(e, Exception) else RuntimeError(repr(e))
            for done in group.waiters:
                if not done.done():
                    done.set_exception(error)
                    done.exception()  # retrieved: a cycle that failed first never awaits it
            if not isinstance(e, Exception):
                raise
        else:
            for done in group.waiters:
                if not done.done():
                    done.set_result(None)

    def _messages(self, parts: list[bytes]) -> list[bytes]:
        """The :class:`EventBatch` messages of ``parts``: one, unless that would be over the
        transport's limit."""
        limit = self._max_bytes
        if limit is not None and sum(len(p) for p in parts) > limit - self._overhead():
            groups: list[list[bytes]] = [[]]
            size = 0
            for p in parts:
                if groups[-1] and size + len(p) > limit - self._overhead():
                    groups.append([])
                    size = 0
                groups[-1].append(p)
                size += len(p)
            return [m for g in groups for m in self._messages_of(g)]
        return self._messages_of(parts)

    def _messages_of(self, parts: list[bytes]) -> list[bytes]:
        head: bytes = self._prefix + self._packer.pack(time.time()) + _PARTS
        return [head + array_header(len(parts)) + b"".join(parts)]


class _Group:
    """The parts handed to an emitter and not published yet, and who waits for them."""

    __slots__ = ("parts", "waiters")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.waiters: list[asyncio.Future[None]] = []


_PARTS = pack("parts")


def _why(data: dict[str, Any]) -> str:
    return unpackable(data) or "cannot be encoded"


async def alongside(main: Awaitable[None], events: asyncio.Future[None] | None) -> None:
    """Await ``main`` (a cycle's sending), then ``events`` (the publishing of its events, from
    :meth:`EventEmitter.publish`, already under way): the cycle goes on once both are done.

    Raises:
        Exception: what ``main`` or ``events`` raised.
    """
    await main
    if events is not None:
        await events


def _without_payloads(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in PAYLOAD_FIELDS:
            out["truncated"] = True
        elif isinstance(value, dict):
            out[key] = _without_payloads(value)
        else:
            out[key] = value
    return out


def error_data(failure: FailureInfo | None) -> dict[str, Any] | None:
    """A failure as event data: its kind, exception name, message and cause (no stack)."""
    if failure is None:
        return None
    data: dict[str, Any] = {"kind": failure.kind, "name": failure.class_name}
    if failure.message:
        data["message"] = failure.message
    if failure.cause is not None:
        data["cause"] = error_data(failure.cause)
    return data
