"""Event records published by the engines for event listeners (see ``_events``).

The public home of these names for the other Infinitic packages."""

from infinitic.common._events import (
    PAYLOAD_FIELDS,
    PUBLISHES_IN_FLIGHT,
    TASK_TYPE,
    WORKFLOW_TYPE,
    EventBatch,
    EventComponent,
    EventEmitter,
    EventPart,
    EventRecord,
    EventRecorder,
    EventTopic,
    Publish,
    RawRecord,
    alongside,
    error_data,
    service_event_topics,
    workflow_event_topics,
)

__all__ = [
    "PAYLOAD_FIELDS",
    "PUBLISHES_IN_FLIGHT",
    "TASK_TYPE",
    "WORKFLOW_TYPE",
    "EventBatch",
    "EventComponent",
    "EventEmitter",
    "EventPart",
    "EventRecord",
    "EventRecorder",
    "EventTopic",
    "Publish",
    "RawRecord",
    "alongside",
    "error_data",
    "service_event_topics",
    "workflow_event_topics",
]
