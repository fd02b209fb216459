"""Where outcomes go: straight to whoever waits, with no relay hop.

A task's outcome goes to the requesting workflow's state engine (as a CommandResult) or to the
requesting client; a workflow method's outcome goes to each waiting client and to each waiting
parent workflow's state engine. The engines that produce outcomes send them there themselves;
the ``task-events`` and ``workflow-events`` handlers use the same routes for messages that reach
those topics (from earlier versions, or sent there on purpose).
"""

from __future__ import annotations

from infinitic.common._failures import FailureInfo
from infinitic.common._ids import deterministic_id
from infinitic.common._messages import (
    CommandResult,
    Message,
    MethodOutcome,
    TaskOutcome,
    method_outcome_failure,
)
from infinitic.common._topics import TopicKind, response_topic, topic

#: (topic, message, key) of a message to send.
Route = tuple[str, Message, str | None]


def task_failure(m: TaskOutcome) -> FailureInfo:
    """The failure a requester of ``m`` sees: a task failure naming service, method and task
    id, caused by what the task raised."""
    return FailureInfo(
        kind="task_failed",
        service_name=m.service_name,
        method_name=m.method_name,
        id=m.task_id,
        cause=m.failure,
    )


def task_outcome_route(m: TaskOutcome) -> Route | None:
    """Where the outcome of a task goes (None if nobody asked)."""
    r = m.requester
    if r.workflow_name and r.workflow_id and r.command_id:
        return (
            topic(TopicKind.WORKFLOW_ENGINE, r.workflow_name),
            CommandResult(
                workflow_name=r.workflow_name,
                workflow_id=r.workflow_id,
                command_id=r.command_id,
                status=m.status,
                value=m.value,
                failure=task_failure(m) if m.failure is not None else None,
                message_id=deterministic_id(m.message_id, "forward"),
            ),
            r.workflow_id,
        )
    if r.client_name:
        return response_topic(r.client_name), m, None
    return None


def method_outcome_routes(m: MethodOutcome) -> list[Route]:
    """Where the outcome of a workflow method run goes: each of its waiters."""
    routes: list[Route] = []
    for waiter in m.waiters:
        if waiter.client_name is not None:
            routes.append(
                (response_topic(waiter.client_name), m.model_copy(update={"waiters": []}), None)
            )
        elif waiter.workflow_name and waiter.workflow_id and waiter.command_id:
            routes.append(
                (
                    topic(TopicKind.WORKFLOW_ENGINE, waiter.workflow_name),
                    CommandResult(
                        workflow_name=waiter.workflow_name,
                        workflow_id=waiter.workflow_id,
                        command_id=waiter.command_id,
                        status=m.status,
                        value=m.value,
                        failure=method_outcome_failure(m),
                        message_id=deterministic_id(
                            "child-result", waiter.command_id, m.method_run_id
                        ),
                    ),
                    waiter.workflow_id,
                )
            )
    return routes
