"""The events of a service executor (see :mod:`infinitic.common.events`).

Like the state engine's, they are read off what the executor did: for each task attempt it
handled, ``dispatch`` and ``started``, then what its outbox holds for that task: a retry
(``retryScheduled``), its outcome (``completed`` or ``failed``), or nothing for a delegated
method that returned (``delegationCompleted``: the result comes later).
"""

from __future__ import annotations

from typing import Any

from infinitic.common.events import (
    TASK_TYPE,
    EventComponent,
    EventEmitter,
    RawRecord,
    error_data,
)
from infinitic.common.messages import CommandResult, ExecuteTask, TaskOutcome
from infinitic.common.tag_messages import CompleteDelegatedTask
from infinitic.transport import Outbox

_EXECUTOR = EventComponent.SERVICE_EXECUTOR.value
_DISPATCH = TASK_TYPE + "dispatch"
_STARTED = TASK_TYPE + "started"
_DELEGATION_COMPLETED = TASK_TYPE + "delegationCompleted"


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
) -> bytes:
    """The events of the attempts of ``handled`` whose effects ``out`` holds (one message for
    a task, every task of a batch for a batched method), encoded for
    :meth:`~infinitic.common.events.EventEmitter.publish` while ``out`` is sent (before the
    messages handled are acknowledged)."""
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
    records: list[RawRecord] = []
    add = records.append
    for m in handled:
        data = _data(m)
        task_id = m.task_id
        add((_DISPATCH, task_id, _EXECUTOR, {**data, "taskArgs": m.method_args}))
        add((_STARTED, task_id, _EXECUTOR, data))
        end = ends.get(task_id)
        if end is not None:
            add((TASK_TYPE + end[0], task_id, _EXECUTOR, {**data, **end[1]}))
        elif delegated:
            add((_DELEGATION_COMPLETED, task_id, _EXECUTOR, data))
    return emitter.encode(handled[0].message_id, records, max_bytes)
