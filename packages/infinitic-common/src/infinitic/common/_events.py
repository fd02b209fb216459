"""Event records: what the engines did, published for event listeners (issue 13).

A component that handles a message (the workflow state engine, a workflow executor, a service
executor) may publish, in the same cycle as its other messages, one :class:`EventBatch` on its
own events topic carrying a compact record of each thing it did. Nothing in Infinitic consumes
these topics: event listeners read them with their own subscription and build the CloudEvents
there, so the engines pay only for a few tuples and one msgpack encoding per handled message.

Records are plain named tuples (msgpack packs them as arrays): the CloudEvent type, its subject
(a workflow or task id), the component that emitted it and Infinitic's data fields (camelCase
keys, JSON-compatible values except bytes). Their time is the batch's (``emitted_at``), as
Infinitic's events carry their publishing time.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Coroutine
from typing import Any, ClassVar, NamedTuple

import msgpack

from infinitic.common._failures import FailureInfo
from infinitic.common._messages import ENVELOPE_VERSION, Message, register_message
from infinitic.common._serialization import map_header, pack, unpackable
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


@register_message
class EventBatch(Message):
    """The events of one handled message, from one component of one worker, at
    ``emitted_at``.

    The batch's id is the handled message's and the id of event ``i`` is ``f"{message_id}-{i}"``,
    so a message handled again (at-least-once) gives the same ids and a listener can drop the
    duplicates.
    """

    TYPE: ClassVar[str] = "event_batch"

    entity_name: str
    worker_name: str
    version: str = ""
    events: list[EventRecord]


class EventRecorder:
    """Gathers the records of one handled message (one per cycle; cheap: a list of tuples)."""

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: list[EventRecord] = []

    def workflow(self, name: str, subject: str, data: dict[str, Any]) -> None:
        """Record ``infinitic.workflow.<name>`` from the state engine."""
        self.records.append(EventRecord(WORKFLOW_TYPE + name, subject, _STATE_ENGINE, data))

    def task(self, name: str, subject: str, component: str, data: dict[str, Any]) -> None:
        """Record ``infinitic.task.<name>`` from a service or workflow executor."""
        self.records.append(EventRecord(TASK_TYPE + name, subject, component, data))


class EventEmitter:
    """Encodes the batches of one component of one worker for one service or workflow.

    What never changes (the envelope, the entity, the worker, the version) is packed once, so a
    batch costs one msgpack call on its records.

    Args:
        topic: the events topic (see :class:`EventTopic`).
        entity_name: the service or workflow.
        worker_name: the worker's name (``workerName`` in the CloudEvents' data).
        version: the library version (``infiniticVersion``).
    """

    __slots__ = (
        "_packer",
        "_prefix",
        "entity_name",
        "placeholder",
        "topic",
        "version",
        "worker_name",
    )

    def __init__(self, topic: str, entity_name: str, worker_name: str, version: str) -> None:
        self.topic = topic
        self.entity_name = entity_name
        self.worker_name = worker_name
        self.version = version
        #: What outboxes name the batches by (their bytes are made by :meth:`encode`).
        self.placeholder = EventBatch.model_construct(
            message_id="",
            entity_name=entity_name,
            worker_name=worker_name,
            version=version,
            events=[],
        )
        self._packer = msgpack.Packer(use_bin_type=True, datetime=False, autoreset=True)
        envelope = map_header(3) + pack("v") + pack(ENVELOPE_VERSION) + pack("t")
        envelope += pack(EventBatch.TYPE) + pack("b") + map_header(6)
        for key, value in (("entity_name", entity_name), ("worker_name", worker_name)):
            envelope += pack(key) + pack(value)
        self._prefix = envelope + pack("version") + pack(version) + pack("message_id")

    def encode(
        self, handled_message_id: str, records: list[EventRecord], max_bytes: int | None
    ) -> bytes:
        """The envelope bytes of the batch of ``records`` (those :func:`encode_message` gives
        for the :class:`EventBatch`, without building it).

        A batch over ``max_bytes`` (the transport's limit) is encoded again without the user
        payloads (:data:`PAYLOAD_FIELDS`), then without data: an event never makes its engine's
        cycle fail. So is a batch holding a value msgpack cannot encode (it is logged by the
        engine's own encoding of the message that carries the value).
        """
        p = self._packer
        head: bytes = self._prefix + p.pack(handled_message_id) + _EMITTED_AT + p.pack(time.time())
        try:
            data: bytes = head + _EVENTS + p.pack(records)
        except Exception:  # a value msgpack refuses: drop the data rather than the cycle
            records = [r._replace(data={"truncated": True, "why": _why(r.data)}) for r in records]
            data = head + _EVENTS + p.pack(records)
        if max_bytes is not None and len(data) > max_bytes:
            records = [r._replace(data=_without_payloads(r.data)) for r in records]
            data = head + _EVENTS + p.pack(records)
            if len(data) > max_bytes:  # still too large (a huge error text): types and ids only
                records = [r._replace(data={"truncated": True}) for r in records]
                data = head + _EVENTS + p.pack(records)
        return data


_EMITTED_AT = pack("emitted_at")
_EVENTS = pack("events")


def _why(data: dict[str, Any]) -> str:
    return unpackable(data) or "cannot be encoded"


async def alongside(main: Awaitable[None], events: Coroutine[Any, Any, None] | None) -> None:
    """Await ``main`` (a cycle's sending) with ``events`` (the publishing of its batch) running
    alongside: one task, not a gather of two (on the in-memory transport the tasks cost more
    than the publishing; on Pulsar, two publishes in flight cost less than two in a row).

    Raises:
        Exception: what ``main`` or ``events`` raised (``events`` is canceled if ``main``
            fails: the handled message comes back and the cycle runs again).
    """
    if events is None:
        await main
        return
    task = asyncio.ensure_future(events)
    try:
        await main
    except BaseException:
        task.cancel()
        raise
    await task


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
