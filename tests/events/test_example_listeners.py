"""The example listeners of examples/: JSON lines in a file, a per-workflow timeline in Redis."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from cloudevents.core.v1.event import CloudEvent

from infinitic.client import InfiniticClient
from infinitic.transport import InMemoryTransport
from infinitic_examples.bank_wire.workflows import BankWorkflow
from infinitic_examples.event_listeners import JsonLinesWriter, RedisTimeline, read_timeline

from .support import Collector
from .test_listener import bank_worker, completed, wire


async def test_the_json_lines_writer_writes_one_event_per_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writer = JsonLinesWriter(path)
    collector = Collector()
    t = InMemoryTransport()
    w = bank_worker(t)
    w.add_event_listener(writer, subscription_name="file", batch={"max_seconds": 0.01})
    w.add_event_listener(collector, subscription_name="test", batch={"max_seconds": 0.01})
    async with w, InfiniticClient(transport=t) as client:
        wid = await wire(client)
        await collector.wait_for(completed(wid))
        writer(collector.events)  # written again: a reader de-duplicates by id
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    by_id = {line["id"]: line for line in lines}
    assert {e.get_id() for e in collector.events} <= set(by_id)
    last = by_id[next(e.get_id() for e in collector.events if completed(wid)([e]))]
    assert last["type"] == "infinitic.workflow.completed"
    assert last["subject"] == wid
    assert last["data"]["workflowName"] == "BankWorkflow"


@pytest.mark.redis
async def test_the_redis_timeline_keeps_each_workflows_events_in_order() -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"test-timeline-{uuid.uuid4().hex[:8]}:"
    timeline = RedisTimeline(url, prefix=prefix, ttl_seconds=60)
    try:
        await timeline.redis.ping()
    except OSError as e:
        await timeline.close()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis unreachable at {url}: {e}")
    collector = Collector()

    async def both(events: list[CloudEvent]) -> None:
        await timeline(events)
        await collector(events)

    t = InMemoryTransport()
    w = bank_worker(t)
    w.add_event_listener(both, batch={"max_seconds": 0.01})
    try:
        async with w, InfiniticClient(transport=t) as client:
            wid = await wire(client)
            await collector.wait_for(
                lambda events: (
                    completed(wid)(events)
                    and sum(e.get_type() == "infinitic.task.completed" for e in events) >= 7
                )
            )
            await timeline(collector.events)  # a batch twice lands once
        entries = await read_timeline(timeline.redis, wid, prefix)
        types = [e["type"] for e in entries]
        assert types[0] == "infinitic.workflow.dispatch"
        assert types[-1] == "infinitic.workflow.completed"
        assert len({e["id"] for e in entries}) == len(entries)
        assert [
            e["task"]
            for e in entries
            if "/services/" in e["source"] and e["type"].endswith(".completed")
        ] == ["withdraw", "deposit", "send"]
        assert BankWorkflow.__name__ in entries[0]["source"]
    finally:
        await timeline.redis.delete(
            *[k async for k in timeline.redis.scan_iter(prefix + "*")] or ["-"]
        )
        await timeline.close()
