"""An event listener keeping a per-workflow timeline in Redis.

Each workflow instance gets a sorted set ``<prefix><workflow id>`` scored by the event time,
whose members are compact JSON entries (``time``, ``type``, ``source``, ``id`` and, for tasks,
their name): ``ZADD`` makes a batch delivered twice land once. Task events of service executors
go to the timeline of the workflow that asked for the task (its ``requester``); a workflow
executor's to the workflow it ran.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cloudevents.core.v1.event import CloudEvent
from redis.asyncio import Redis

DEFAULT_PREFIX = "infinitic:timeline:"


def _workflow_of(event: CloudEvent) -> str | None:
    data = event.get_data()
    if not isinstance(data, dict):
        return None
    if "/workflows/stateEngine/" in event.get_source():
        return event.get_subject()
    requester = data.get("requester")
    if isinstance(requester, dict) and requester.get("workflowId"):
        return str(requester["workflowId"])
    workflow_id = data.get("workflowId")
    return str(workflow_id) if workflow_id else None


def _entry(event: CloudEvent) -> dict[str, Any]:
    data = event.get_data()
    time = event.get_time()
    entry: dict[str, Any] = {
        "time": time.isoformat() if time is not None else None,
        "type": event.get_type(),
        "source": event.get_source(),
        "id": event.get_id(),
    }
    if isinstance(data, dict) and data.get("taskName"):
        entry["task"] = data["taskName"]
    return entry


class RedisTimeline:
    """Writes each workflow's events to its timeline in Redis (an async listener).

    Args:
        url: the Redis server (default: ``$REDIS_URL``, else ``redis://127.0.0.1:6379/0``).
        prefix: the start of the timelines' keys.
        ttl_seconds: how long a timeline is kept after its last event (None: forever).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl_seconds: int | None = 7 * 24 * 3600,
    ) -> None:
        self.redis = Redis.from_url(url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds

    async def __call__(self, events: list[CloudEvent]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        touched: set[str] = set()
        for event in events:
            workflow_id = _workflow_of(event)
            time = event.get_time()
            if workflow_id is None or time is None:
                continue
            key = self.prefix + workflow_id
            member = json.dumps(_entry(event), sort_keys=True)
            pipe.zadd(key, {member: time.timestamp()})
            touched.add(key)
        if self.ttl_seconds is not None:
            for key in touched:
                pipe.expire(key, self.ttl_seconds)
        await pipe.execute()  # raises on failure: the batch is delivered again

    async def close(self) -> None:
        """Close the Redis connections; idempotent."""
        await self.redis.aclose()


async def read_timeline(
    redis: Redis, workflow_id: str, prefix: str = DEFAULT_PREFIX
) -> list[dict[str, Any]]:
    """The timeline of a workflow, oldest first."""
    members = await redis.zrange(prefix + workflow_id, 0, -1)
    return [json.loads(m) for m in members if isinstance(m, bytes | str)]
