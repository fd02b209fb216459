"""Event batches: the parts of the cycles sending at once go out as one message, encoded as
other messages; too large parts lose their payloads (not the cycle), too many parts make several
messages; a failed publish fails every cycle of its batch."""

from __future__ import annotations

import asyncio

import pytest

from infinitic.common import decode_message, encode_message
from infinitic.common.events import (
    PUBLISHES_IN_FLIGHT,
    EventBatch,
    EventEmitter,
    EventRecorder,
    EventTopic,
    alongside,
    service_event_topics,
    workflow_event_topics,
)


class Published:
    """A transport's ``publish`` keeping what it is given (failing while ``down``)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.down = False

    async def __call__(self, topic: str, data: bytes) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.messages.append((topic, data))

    def batches(self) -> list[EventBatch]:
        out = []
        for _, data in self.messages:
            batch = decode_message(data)
            assert isinstance(batch, EventBatch)
            out.append(batch)
        return out


def _recorder() -> EventRecorder:
    recorder = EventRecorder()
    recorder.workflow("dispatch", "wf-1", {"workflowName": "W", "dispatch": {"methodArgs": [1]}})
    recorder.task("completed", "task-1", "services/executor", {"result": b"x" * 2000})
    return recorder


async def test_the_parts_of_one_turn_of_the_loop_go_out_as_one_batch() -> None:
    published = Published()
    emitter = EventEmitter(EventTopic.WORKFLOW_STATE.of("W"), "W", "worker-1", "0.1.0", published)
    first = emitter.publish(emitter.encode("handled-1", _recorder().records, None))
    second = emitter.publish(emitter.encode("handled-2", _recorder().records[:1], None))
    assert not first.done()  # published on the next turn
    await asyncio.gather(first, second)
    [(topic, _)] = published.messages
    assert topic == "workflow-state-events:W"
    [decoded] = published.batches()
    assert decode_message(encode_message(decoded)) == decoded
    assert [p.message_id for p in decoded.parts] == ["handled-1", "handled-2"]
    assert [e.type for e in decoded.parts[0].events] == [
        "infinitic.workflow.dispatch",
        "infinitic.task.completed",
    ]
    assert decoded.parts[0].events[0].component == "workflows/stateEngine"
    assert decoded.parts[1].events == decoded.parts[0].events[:1]
    assert (decoded.worker_name, decoded.version, decoded.entity_name) == ("worker-1", "0.1.0", "W")
    await emitter.publish(emitter.encode("handled-3", _recorder().records, None))
    assert len(published.messages) == 2  # a later turn: a batch of its own


async def test_the_parts_handed_while_publishes_are_under_way_go_out_together() -> None:
    published = Published()
    gate = asyncio.Event()

    async def slow(topic: str, data: bytes) -> None:
        await gate.wait()
        await published(topic, data)

    emitter = EventEmitter(EventTopic.WORKFLOW_STATE.of("W"), "W", "w", "v", slow)
    done = []
    for i in range(PUBLISHES_IN_FLIGHT + 3):
        done.append(emitter.publish(emitter.encode(f"m{i}", _recorder().records, None)))
        await asyncio.sleep(0)  # its publish starts, if fewer than the limit are under way
    gate.set()
    await asyncio.gather(*done)
    alone = [[f"m{i}"] for i in range(PUBLISHES_IN_FLIGHT)]
    together = [f"m{i}" for i in range(PUBLISHES_IN_FLIGHT, PUBLISHES_IN_FLIGHT + 3)]
    assert [[p.message_id for p in b.parts] for b in published.batches()] == [*alone, together]


async def test_a_value_msgpack_refuses_drops_the_data_not_the_batch() -> None:
    published = Published()
    emitter = EventEmitter(EventTopic.SERVICE_EXECUTOR.of("S"), "S", "w", "v", published)
    recorder = EventRecorder()
    recorder.task("completed", "task-1", "services/executor", {"result": 2**70})
    await emitter.publish(emitter.encode("m", recorder.records, None))
    [event] = published.batches()[0].parts[0].events
    assert event.data["truncated"] is True
    assert "beyond 64 bits" in event.data["why"]


async def test_a_part_over_the_limit_drops_the_payloads() -> None:
    published = Published()
    emitter = EventEmitter(EventTopic.SERVICE_EXECUTOR.of("S"), "S", "w", "v", published)
    whole = emitter.encode("m", _recorder().records, None)
    await emitter.publish(emitter.encode("m", _recorder().records, 1000))
    [(_, data)] = published.messages
    assert len(whole) > 1000 >= len(data)
    events = published.batches()[0].parts[0].events
    assert events[1].data == {"truncated": True}
    assert events[0].data == {"workflowName": "W", "dispatch": {"truncated": True}}


async def test_parts_over_the_limit_together_go_out_as_several_messages() -> None:
    published = Published()
    emitter = EventEmitter(EventTopic.SERVICE_EXECUTOR.of("S"), "S", "w", "v", published)
    records = _recorder().records[:1]
    done = [emitter.publish(emitter.encode(f"m{i}", records, 300)) for i in range(20)]
    await asyncio.gather(*done)
    assert len(published.messages) > 1
    assert all(len(data) <= 300 for _, data in published.messages)
    ids = [p.message_id for b in published.batches() for p in b.parts]
    assert ids == [f"m{i}" for i in range(20)]


async def test_a_failed_publish_fails_every_cycle_of_its_batch() -> None:
    published = Published()
    emitter = EventEmitter(EventTopic.WORKFLOW_STATE.of("W"), "W", "w", "v", published)
    published.down = True
    done = [emitter.publish(emitter.encode(f"m{i}", _recorder().records, None)) for i in range(3)]
    for d in done:
        with pytest.raises(ConnectionError):
            await d
    published.down = False
    await emitter.publish(emitter.encode("m0", _recorder().records, None))  # the cycle again
    assert [p.message_id for p in published.batches()[0].parts] == ["m0"]


async def test_a_cycle_canceled_while_waiting_leaves_the_others_their_publish() -> None:
    published = Published()
    gate = asyncio.Event()
    both_sent = asyncio.Event()
    sent_count = 0

    async def slow(topic: str, data: bytes) -> None:
        await gate.wait()
        await published(topic, data)

    async def sent() -> None:
        nonlocal sent_count
        sent_count += 1
        if sent_count == 2:
            both_sent.set()

    emitter = EventEmitter(EventTopic.WORKFLOW_STATE.of("W"), "W", "w", "v", slow)

    async def cycle(i: int) -> None:
        await alongside(sent(), emitter.publish(emitter.encode(f"m{i}", [], None)))

    canceled, kept = asyncio.create_task(cycle(0)), asyncio.create_task(cycle(1))
    await both_sent.wait()  # both sent their other messages: they wait for the shared publish
    canceled.cancel()
    await asyncio.sleep(0)
    gate.set()
    await kept  # not canceled with the other
    assert canceled.cancelled()
    assert [p.message_id for p in published.batches()[0].parts] == ["m0", "m1"]


def test_event_topics_are_apart_from_the_engines_topics() -> None:
    assert workflow_event_topics("W") == ["workflow-state-events:W", "workflow-executor-events:W"]
    assert service_event_topics("S") == ["service-executor-events:S"]
