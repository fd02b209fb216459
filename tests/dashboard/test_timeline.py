"""The event timeline keeps what its retention says: events per instance, instances, seconds."""

from __future__ import annotations

from typing import Any

from cloudevents.core.v1.event import CloudEvent

from infinitic.dashboard import EventTimeline


def event(n: int, workflow_id: str, kind: str = "taskDispatched", **data: Any) -> CloudEvent:
    return CloudEvent(
        attributes={
            "id": f"batch-{n}",
            "source": "inMemory/workflows/stateEngine/W",
            "type": f"infinitic.workflow.{kind}",
            "specversion": "1.0",
            "subject": workflow_id,
        },
        data={"workflowName": "W", **data},
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_retention_by_count_by_instances_and_by_age() -> None:
    clock = Clock()
    timeline = EventTimeline(max_events=3, max_workflows=2, retention_seconds=60, clock=clock)
    await timeline([event(i, "a") for i in range(5)] + [event(3, "a")])  # 3 again: kept once
    assert [e.id for e in timeline.events("a")] == ["batch-2", "batch-3", "batch-4"]
    await timeline([event(10, "b")])
    clock.now = 30
    await timeline([event(11, "c")])  # a third instance: the oldest (a) goes
    assert timeline.events("a") == []
    assert len(timeline) == 2
    clock.now = 61
    assert timeline.events("b") == []  # nothing for 61 s
    assert [e.id for e in timeline.events("c")] == ["batch-11"]


async def test_the_summary_tells_the_result_or_the_failure() -> None:
    timeline = EventTimeline()
    await timeline(
        [
            event(1, "w1", "methodCompleted", methodCompleted={"methodId": "w1", "output": 42}),
            event(2, "w1", "completed"),
            event(3, "w2", "methodFailed", methodFailed={"methodId": "w2", "error": {"k": 1}}),
            event(4, "w3", "canceled"),
        ]
    )
    done, failed, canceled = (timeline.summary(w) for w in ("w1", "w2", "w3"))
    assert done is not None
    assert (done.status, done.result, done.has_result) == (
        "completed",
        42,
        True,
    )
    assert failed is not None
    assert (failed.status, failed.error) == ("failed", {"k": 1})
    assert canceled is not None
    assert canceled.status == "canceled"
    assert [s.workflow_id for s in timeline.recent("W")] == ["w3", "w2", "w1"]
    await timeline([event(5, "w2", "retryTask")])
    assert failed.status == "running"
