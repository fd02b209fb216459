"""The events of a service executor (see :mod:`infinitic.common.events`).

Like the state engine's, they are read off what the executor did: for each task attempt it
handled, ``dispatch`` and ``started``, then what its outbox holds for that task: a retry
(``retryScheduled``), its outcome (``completed`` or ``failed``), or nothing for a delegated
method that returned (``delegationCompleted``: the result comes later).
"""

from __future__ import annotations

from typing import Any

from infinitic.common.events import EventComponent, EventEmitter, EventRecorder, error_data
from infinitic.common.messages import CommandResult, ExecuteTask, TaskOutcome
from infinitic.common.tag_messages import CompleteDelegatedTask
from infinitic.transport import Outbox, Outgoing

_EXECUTOR = EventComponent.SERVICE_EXECUTOR.value


def _data(m: ExecuteTask) -> dict[str, Any]:
    r = m.requester
    return {
        "serviceName": m.service_name,
        "taskName": m.method_name,
        "taskRetrySequence": m.retry_sequence,
        "taskRetryIndex": m.retry_index,
        "taskTags": m.tags,
        "requester": {
            "workflowName": r.workflow_name,
            "workflowId": r.workflow_id,
            "methodId": r.method_run_id,
            "clientName": r.client_name,
        },
    }


def task_events(
    emitter: EventEmitter,
    handled: list[ExecuteTask],
    out: Outbox,
    delegated: bool,
    now: float,
    max_bytes: int | None,
) -> Outgoing:
    """The batch of events of the attempts of ``handled`` whose effects ``out`` holds (one
    message for a task, every task of a batch for a batched method), to send after ``out``
    (before the messages handled are acknowledged)."""
    ends: dict[str, tuple[str, dict[str, Any]]] = {}
    for item in out.items:
        m = item.message
        if isinstance(m, ExecuteTask) and item.deliver_at is not None:
            delay = max(0.0, item.deliver_at - now)
            detail = {"taskRetryDelay": delay, "error": error_data(m.last_failure)}
            ends[m.task_id] = ("retryScheduled", detail)
        elif isinstance(m, TaskOutcome | CommandResult):
            task_id = m.task_id if isinstance(m, TaskOutcome) else m.command_id
            if m.status == "completed":
                ends[task_id] = ("completed", {"result": m.value})
            else:
                ends[task_id] = ("failed", {"error": error_data(m.failure)})
        elif isinstance(m, CompleteDelegatedTask) and m.status == "failed":
            ends[m.task_id] = ("failed", {"error": error_data(m.failure)})
    recorder = EventRecorder()
    for m in handled:
        data = _data(m)
        recorder.task("dispatch", m.task_id, _EXECUTOR, {**data, "taskArgs": m.method_args})
        recorder.task("started", m.task_id, _EXECUTOR, data)
        end = ends.get(m.task_id)
        if end is not None:
            recorder.task(end[0], m.task_id, _EXECUTOR, {**data, **end[1]})
        elif delegated:
            recorder.task("delegationCompleted", m.task_id, _EXECUTOR, data)
    encoded = emitter.encode(handled[0].message_id, recorder.records, max_bytes)
    return Outgoing(emitter.topic, emitter.placeholder, data=encoded)
