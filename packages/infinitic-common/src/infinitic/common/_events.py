"""Event records: what the engines did, published for event listeners (issue 13).

A component that handles a message (the workflow state engine, a workflow executor, a service
executor) may publish, in the same cycle as its other messages, one :class:`EventBatch` on its
own events topic carrying a compact record of each thing it did. Nothing in Infinitic consumes
these topics: event listeners read them with their own subscription and build the CloudEvents
there, so the engines pay only for a few tuples and one msgpack encoding per handled message.

Records are plain named tuples (msgpack packs them as arrays): the CloudEvent type, its subject
(a workflow or task id), the component that emitted it, the time and Infinitic's data fields
(camelCase keys, JSON-compatible values except bytes).
"""

from __future__ import annotations

import enum
import time
from typing import Any, ClassVar, NamedTuple

from infinitic.common._ids import deterministic_id
from infinitic.common._messages import ENVELOPE_VERSION, Message, register_message
from infinitic.common._serialization import pack
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
        time: when it happened (epoch seconds).
        data: Infinitic's data fields of that type (without ``workerName`` and
            ``infiniticVersion``, which the batch carries once).
    """

    type: str
    subject: str
    component: str
    time: float
    data: dict[str, Any]


@register_message
class EventBatch(Message):
    """The events of one handled message, from one component of one worker.

    The id of event ``i`` is ``f"{message_id}-{i}"``: the batch's id derives from the handled
    message's, so a message handled again (at-least-once) gives the same ids and a listener can
    drop the duplicates.
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
        self.records.append(
            EventRecord(WORKFLOW_TYPE + name, subject, _STATE_ENGINE, time.time(), data)
        )

    def task(self, name: str, subject: str, component: str, data: dict[str, Any]) -> None:
        """Record ``infinitic.task.<name>`` from a service or workflow executor."""
        self.records.append(EventRecord(TASK_TYPE + name, subject, component, time.time(), data))


class EventEmitter:
    """Encodes the batches of one component of one worker for one service or workflow.

    Args:
        topic: the events topic (see :class:`EventTopic`).
        entity_name: the service or workflow.
        worker_name: the worker's name (``workerName`` in the CloudEvents' data).
        version: the library version (``infiniticVersion``).
    """

    __slots__ = ("entity_name", "topic", "version", "worker_name")

    def __init__(self, topic: str, entity_name: str, worker_name: str, version: str) -> None:
        self.topic = topic
        self.entity_name = entity_name
        self.worker_name = worker_name
        self.version = version

    def encode(
        self, handled_message_id: str, records: list[EventRecord], max_bytes: int | None
    ) -> tuple[EventBatch, bytes]:
        """The batch of ``records`` and its envelope bytes (what :func:`encode_message` would
        give, without validating the records again).

        A batch over ``max_bytes`` (the transport's limit) is encoded again without the user
        payloads (:data:`PAYLOAD_FIELDS`): an event never makes its engine's cycle fail.
        """
        message_id = deterministic_id("events", handled_message_id, self.topic)
        batch = EventBatch.model_construct(
            message_id=message_id,
            emitted_at=time.time(),
            entity_name=self.entity_name,
            worker_name=self.worker_name,
            version=self.version,
            events=records,
        )
        data = self._pack(batch, records)
        if max_bytes is not None and len(data) > max_bytes:
            records = [r._replace(data=_without_payloads(r.data)) for r in records]
            batch = batch.model_copy(update={"events": records})
            data = self._pack(batch, records)
            if len(data) > max_bytes:  # still too large (a huge error text): types and ids only
                records = [r._replace(data={"truncated": True}) for r in records]
                batch = batch.model_copy(update={"events": records})
                data = self._pack(batch, records)
        return batch, data

    def _pack(self, batch: EventBatch, records: list[EventRecord]) -> bytes:
        body = {
            "message_id": batch.message_id,
            "emitted_at": batch.emitted_at,
            "entity_name": self.entity_name,
            "worker_name": self.worker_name,
            "version": self.version,
            "events": records,
        }
        return pack({"v": ENVELOPE_VERSION, "t": EventBatch.TYPE, "b": body})


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
