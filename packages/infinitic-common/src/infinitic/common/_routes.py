"""Where outcomes go: straight to whoever waits, with no relay hop.

A task's outcome goes to the requesting workflow's state engine (as a CommandResult) or to the
requesting client; a workflow method's outcome goes to each waiting client and to each waiting
parent workflow's state engine. The engines that produce outcomes send them there themselves;
the ``task-events`` and ``workflow-events`` handlers use the same routes for messages that reach
those topics (from earlier versions, or sent there on purpose).
"""

from __future__ import annotations

from typing import Any

from infinitic.common._failures import FailureInfo
from infinitic.common._ids import deterministic_id
from infinitic.common._messages import (
    CommandResult,
    Message,
    MethodOutcome,
    Requester,
    Status,
    TaskOutcome,
    method_outcome_failure,
)
from infinitic.common._topics import TopicKind, response_topic, topic

#: (topic, message, key) of a message to send.
Route = tuple[str, Message, str | None]


def task_failure(m: TaskOutcome) -> FailureInfo:
    """The failure a requester of ``m`` sees: a task failure naming service, method and task
    id, caused by what the task raised."""
    return _task_failed(m.service_name, m.method_name, m.task_id, m.failure)


def _task_failed(
    service_name: str, method_name: str, task_id: str, cause: FailureInfo | None
) -> FailureInfo:
    return FailureInfo(
        kind="task_failed",
        service_name=service_name,
        method_name=method_name,
        id=task_id,
        cause=cause,
    )


def workflow_command(requester: Requester) -> tuple[str, str, str] | None:
    """The workflow name, instance id and command id of ``requester`` when it is a command of a
    workflow instance (an outcome goes to that instance's state engine, as a CommandResult);
    None for a client, or nobody."""
    r = requester
    if r.workflow_name and r.workflow_id and r.command_id:
        return r.workflow_name, r.workflow_id, r.command_id
    return None


def task_outcome_route(m: TaskOutcome) -> Route | None:
    """Where the outcome of a task goes (None if nobody asked)."""
    r = m.requester
    if workflow_command(r) is not None:
        return task_result_route(
            r,
            m.message_id,
            task_id=m.task_id,
            service_name=m.service_name,
            method_name=m.method_name,
            status=m.status,
            value=m.value,
            cause=m.failure,
        )
    if r.client_name:
        return response_topic(r.client_name), m, None
    return None


def task_result_route(
    requester: Requester,
    outcome_id: str,
    *,
    task_id: str,
    service_name: str,
    method_name: str,
    status: Status,
    value: Any,
    cause: FailureInfo | None,
) -> Route:
    """The ``CommandResult`` of a task for the workflow that asked for it (``requester`` names
    its workflow, instance and command): what :func:`task_outcome_route` gives for the
    :class:`TaskOutcome` of id ``outcome_id`` and these fields (``cause``: its failure), built
    without that outcome by an executor whose requester is a workflow."""
    names = workflow_command(requester)
    if names is None:
        raise ValueError(f"the requester of task {task_id} is not a workflow's command")
    workflow_name, workflow_id, command_id = names
    failure = None if cause is None else _task_failed(service_name, method_name, task_id, cause)
    return (
        topic(TopicKind.WORKFLOW_ENGINE, workflow_name),
        CommandResult(
            workflow_name=workflow_name,
            workflow_id=workflow_id,
            command_id=command_id,
            status=status,
            value=value,
            failure=failure,
            message_id=deterministic_id(outcome_id, "forward"),
        ),
        workflow_id,
    )


def method_outcome_routes(m: MethodOutcome) -> list[Route]:
    """Where the outcome of a workflow method run goes: each of its waiters."""
    routes: list[Route] = []
    for waiter in m.waiters:
        if waiter.client_name is not None:
            routes.append(
                (response_topic(waiter.client_name), m.model_copy(update={"waiters": []}), None)
            )
        elif (names := workflow_command(waiter)) is not None:
            workflow_name, workflow_id, command_id = names
            routes.append(
                (
                    topic(TopicKind.WORKFLOW_ENGINE, workflow_name),
                    CommandResult(
                        workflow_name=workflow_name,
                        workflow_id=workflow_id,
                        command_id=command_id,
                        status=m.status,
                        value=m.value,
                        failure=method_outcome_failure(m),
                        message_id=deterministic_id("child-result", command_id, m.method_run_id),
                    ),
                    workflow_id,
                )
            )
    return routes
