"""The event timeline: an event listener keeping the recent events of each workflow instance in
memory, so that an instance stays visible, with its result or its failure, after it ended (its
state is deleted then).

Register it like any listener (``worker.add_event_listener(timeline)``). What it keeps is
bounded: at most ``max_events`` events per instance (the oldest go first), at most
``max_workflows`` instances, and nothing older than ``retention_seconds`` since the instance's
last event.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cloudevents.core.v1.event import CloudEvent

WORKFLOW_PREFIX = "infinitic.workflow."
TASK_PREFIX = "infinitic.task."


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One event of an instance, as shown: its time, short type, component and data."""

    id: str
    time: str
    type: str
    component: str
    subject: str
    data: dict[str, Any]


@dataclass(slots=True)
class WorkflowSummary:
    """What the events tell of an instance: its workflow, whether it ended and how."""

    workflow_id: str
    workflow_name: str = ""
    status: str = "running"  # running, completed, failed, canceled
    result: Any = None
    has_result: bool = False
    error: Any = None
    last_event: str = ""


@dataclass(slots=True)
class _Entry:
    summary: WorkflowSummary
    events: deque[TimelineEvent]
    ids: set[str] = field(default_factory=set)
    seen_at: float = 0.0


def workflow_id_of(event: CloudEvent) -> str | None:
    """The workflow instance an event is about: the subject of a workflow event, the
    requesting workflow of a task event (None: a task a client requested)."""
    kind = event.get_type()
    if kind.startswith(WORKFLOW_PREFIX):
        return event.get_subject()
    data = event.get_data()
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("workflowId"), str):
        return str(data["workflowId"])
    requester = data.get("requester")
    if isinstance(requester, dict) and isinstance(requester.get("workflowId"), str):
        return str(requester["workflowId"])
    return None


class EventTimeline:
    """An event listener keeping the recent events of each workflow instance (see the module).

    Args:
        max_events: events kept per instance (the oldest are dropped first).
        max_workflows: instances kept (the one whose last event is the oldest goes first).
        retention_seconds: an instance with no event for that long is forgotten.
        clock: seconds, monotonic (tests give their own).
    """

    def __init__(
        self,
        *,
        max_events: int = 200,
        max_workflows: int = 10_000,
        retention_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_events < 1 or max_workflows < 1 or retention_seconds <= 0:
            raise ValueError("max_events, max_workflows and retention_seconds must be positive")
        self.max_events = max_events
        self.max_workflows = max_workflows
        self.retention_seconds = retention_seconds
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    async def __call__(self, events: list[CloudEvent]) -> None:
        """Keep the events of workflow instances (an event delivered again is kept once)."""
        now = self._clock()
        for event in events:
            workflow_id = workflow_id_of(event)
            if workflow_id is not None:
                self._keep(workflow_id, event, now)
        self._prune(now)

    def _keep(self, workflow_id: str, event: CloudEvent, now: float) -> None:
        entry = self._entries.get(workflow_id)
        if entry is None:
            entry = _Entry(WorkflowSummary(workflow_id), deque(maxlen=self.max_events))
            self._entries[workflow_id] = entry
        if event.get_id() in entry.ids:
            return
        if len(entry.events) == entry.events.maxlen:
            entry.ids.discard(entry.events[0].id)
        data = event.get_data()
        data = data if isinstance(data, dict) else {}
        kind = event.get_type()
        source = event.get_source().split("/")
        item = TimelineEvent(
            id=event.get_id(),
            time=str(event.get_time() or ""),
            type=kind.removeprefix(WORKFLOW_PREFIX) if kind.startswith(WORKFLOW_PREFIX) else kind,
            component="/".join(source[-3:-1]),
            subject=event.get_subject() or "",
            data=data,
        )
        entry.events.append(item)
        entry.ids.add(item.id)
        entry.seen_at = now
        self._entries.move_to_end(workflow_id)
        if kind.startswith(WORKFLOW_PREFIX):
            _summarize(entry.summary, item)

    def _prune(self, now: float) -> None:
        limit = now - self.retention_seconds
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if len(self._entries) <= self.max_workflows and oldest.seen_at >= limit:
                break
            self._entries.popitem(last=False)

    def events(self, workflow_id: str) -> list[TimelineEvent]:
        """The kept events of an instance, oldest first (empty: none kept)."""
        self._prune(self._clock())
        entry = self._entries.get(workflow_id)
        return list(entry.events) if entry is not None else []

    def summary(self, workflow_id: str) -> WorkflowSummary | None:
        """What the kept events tell of an instance (None: none kept)."""
        self._prune(self._clock())
        entry = self._entries.get(workflow_id)
        return entry.summary if entry is not None else None

    def recent(self, workflow_name: str | None = None, limit: int = 50) -> list[WorkflowSummary]:
        """The instances with the most recent events first (of one workflow, if named)."""
        self._prune(self._clock())
        out: list[WorkflowSummary] = []
        for entry in reversed(self._entries.values()):
            if workflow_name is None or entry.summary.workflow_name == workflow_name:
                out.append(entry.summary)
                if len(out) >= limit:
                    break
        return out

    def __len__(self) -> int:
        return len(self._entries)


def _summarize(summary: WorkflowSummary, event: TimelineEvent) -> None:
    data = event.data
    if isinstance(data.get("workflowName"), str):
        summary.workflow_name = data["workflowName"]
    summary.last_event = event.type
    if event.type == "methodCompleted":
        method = data.get("methodCompleted") or {}
        if method.get("methodId") == summary.workflow_id:  # the main method run
            summary.result = method.get("output")
            summary.has_result = True
    elif event.type == "methodFailed":
        method = data.get("methodFailed") or {}
        summary.status = "failed"
        summary.error = method.get("error")
    elif event.type == "completed":
        summary.status = "completed"
    elif event.type == "canceled":
        summary.status = "canceled"
    elif event.type in ("retryTask", "retryExecutor", "taskCompleted") and (
        summary.status == "failed"
    ):
        summary.status = "running"
        summary.error = None
