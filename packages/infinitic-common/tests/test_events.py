"""Event batches: encoded as other messages, too large ones lose their payloads, not the cycle."""

from __future__ import annotations

from infinitic.common import decode_message, encode_message
from infinitic.common.events import (
    EventBatch,
    EventEmitter,
    EventRecorder,
    EventTopic,
    service_event_topics,
    workflow_event_topics,
)


def _recorder() -> EventRecorder:
    recorder = EventRecorder()
    recorder.workflow("dispatch", "wf-1", {"workflowName": "W", "dispatch": {"methodArgs": [1]}})
    recorder.task("completed", "task-1", "services/executor", {"result": b"x" * 2000})
    return recorder


def test_a_batch_decodes_as_the_message_it_encodes() -> None:
    emitter = EventEmitter(EventTopic.WORKFLOW_STATE.of("W"), "W", "worker-1", "0.1.0")
    data = emitter.encode("handled-1", _recorder().records, None)
    decoded = decode_message(data)
    assert isinstance(decoded, EventBatch)
    assert decoded.message_id == "handled-1"
    assert decode_message(encode_message(decoded)) == decoded
    assert len(data) == len(encode_message(decoded))
    assert [e.type for e in decoded.events] == [
        "infinitic.workflow.dispatch",
        "infinitic.task.completed",
    ]
    assert decoded.events[0].component == "workflows/stateEngine"
    assert decoded.worker_name == "worker-1"


def test_a_value_msgpack_refuses_drops_the_data_not_the_batch() -> None:
    emitter = EventEmitter(EventTopic.SERVICE_EXECUTOR.of("S"), "S", "w", "v")
    recorder = EventRecorder()
    recorder.task("completed", "task-1", "services/executor", {"result": 2**70})
    decoded = decode_message(emitter.encode("m", recorder.records, None))
    assert isinstance(decoded, EventBatch)
    assert decoded.events[0].data["truncated"] is True
    assert "beyond 64 bits" in decoded.events[0].data["why"]


def test_a_batch_over_the_limit_drops_the_payloads() -> None:
    emitter = EventEmitter(EventTopic.SERVICE_EXECUTOR.of("S"), "S", "w", "v")
    whole = emitter.encode("m", _recorder().records, None)
    data = emitter.encode("m", _recorder().records, 1000)
    assert len(whole) > 1000 >= len(data)
    decoded = decode_message(data)
    assert isinstance(decoded, EventBatch)
    assert decoded.events[1].data == {"truncated": True}
    assert decoded.events[0].data == {"workflowName": "W", "dispatch": {"truncated": True}}


def test_event_topics_are_apart_from_the_engines_topics() -> None:
    assert workflow_event_topics("W") == ["workflow-state-events:W", "workflow-executor-events:W"]
    assert service_event_topics("S") == ["service-executor-events:S"]
