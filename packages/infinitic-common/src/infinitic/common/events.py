"""Event records published by the engines for event listeners (see ``_events``).

The public home of these names for the other Infinitic packages."""

from infinitic.common._events import (
    PAYLOAD_FIELDS,
    TASK_TYPE,
    WORKFLOW_TYPE,
    EventBatch,
    EventComponent,
    EventEmitter,
    EventRecord,
    EventRecorder,
    EventTopic,
    alongside,
    error_data,
    service_event_topics,
    workflow_event_topics,
)

__all__ = [
    "PAYLOAD_FIELDS",
    "TASK_TYPE",
    "WORKFLOW_TYPE",
    "EventBatch",
    "EventComponent",
    "EventEmitter",
    "EventRecord",
    "EventRecorder",
    "EventTopic",
    "alongside",
    "error_data",
    "service_event_topics",
    "workflow_event_topics",
]
