"""Telling whoever waits when a message it depends on is dead-lettered.

A dead-lettered message never blocks its topic, but something may wait for its effect: a task's
requester, a client waiting for a workflow method, the instance whose workflow task it was. The
worker's consumers call :func:`tell_waiters` after each dead letter, so that waiter fails with a
:class:`~infinitic.exceptions.MessageDeadLetteredError` naming the topic and the reason, as a task
sent to Infinitic's dead-letter queue fails, instead of waiting forever.
"""

from __future__ import annotations

import logging

from infinitic.common import (
    FailureInfo,
    TopicKind,
    decode_message,
    deterministic_id,
    method_outcome_routes,
    task_outcome_route,
    topic,
)
from infinitic.common.messages import (
    DispatchMethod,
    DispatchWorkflow,
    ExecuteTask,
    ExecuteWorkflowTask,
    Message,
    MethodOutcome,
    Requester,
    TaskOutcome,
    WaitMethod,
    WorkflowTaskCompleted,
    WorkflowTaskFailed,
)
from infinitic.common.tag_messages import DispatchWorkflowByTags
from infinitic.exceptions import MessageDecodeError
from infinitic.transport import Outbox, Transport, TransportMessage

logger = logging.getLogger("infinitic.worker")


async def tell_waiters(transport: Transport, message: TransportMessage, reason: str) -> None:
    """Send the failure of a dead-lettered message to whoever waits for its effect."""
    try:
        m = decode_message(message.data)
    except MessageDecodeError:
        return  # garbage names nobody: the dead-letter topic keeps it with its reason
    failure = FailureInfo(kind="dead_lettered", message=reason, attributes={"topic": message.topic})
    out = Outbox()
    _failure_messages(m, failure, out)
    if not out.items:
        logger.warning(
            "dead-lettered %s %s on %s: nothing waits for it", m.TYPE, m.message_id, message.topic
        )
        return
    await out.send(transport)


def _failure_messages(m: Message, failure: FailureInfo, out: Outbox) -> None:
    message_id = deterministic_id("dead-lettered", m.message_id)
    if isinstance(m, ExecuteTask):
        route = task_outcome_route(
            TaskOutcome(
                task_id=m.task_id,
                service_name=m.service_name,
                method_name=m.method_name,
                status="failed",
                failure=failure,
                requester=m.requester,
                tags=m.tags,
                meta=m.meta,
                message_id=message_id,
            )
        )
        if route is not None:
            out.add(route[0], route[1], key=route[2])
    elif isinstance(m, ExecuteWorkflowTask) and not m.steps:
        return  # no step to fail: no engine sent it, nothing waits for it
    elif isinstance(m, ExecuteWorkflowTask | WorkflowTaskCompleted):
        # The instance's workflow task fails (its waiters learn it; retry_workflow_task resumes).
        step = m.steps[-1].index if isinstance(m, ExecuteWorkflowTask) else m.step
        out.add(
            topic(TopicKind.WORKFLOW_ENGINE, m.workflow_name),
            WorkflowTaskFailed(
                workflow_name=m.workflow_name,
                workflow_id=m.workflow_id,
                workflow_task_id=m.workflow_task_id,
                step=step,
                state_version=m.state_version,
                incarnation=m.incarnation,
                failure=FailureInfo(
                    kind="workflow_task_failed",
                    workflow_name=m.workflow_name,
                    id=m.workflow_id,
                    cause=failure,
                ),
                message_id=message_id,
            ),
            key=m.workflow_id,
        )
    elif isinstance(m, DispatchWorkflowByTags):
        _fail_method(m.dispatch, failure, out)
    elif isinstance(m, DispatchWorkflow | DispatchMethod | WaitMethod):
        _fail_method(m, failure, out)
    # A WorkflowTaskFailed is not answered again (that could loop); other messages (results,
    # signals, tags) have no waiter to name: the dead-letter topic keeps them.


def _fail_method(
    m: DispatchWorkflow | DispatchMethod | WaitMethod, failure: FailureInfo, out: Outbox
) -> None:
    requester: Requester | None = m.requester
    if requester is None:
        return
    if isinstance(m, DispatchWorkflow):
        run_id, method_name = m.workflow_id, m.method_name
    elif isinstance(m, DispatchMethod):
        run_id, method_name = m.method_run_id, m.method_name
    else:
        run_id, method_name = m.method_run_id, ""
    outcome = MethodOutcome(
        workflow_name=m.workflow_name,
        workflow_id=m.workflow_id,
        method_run_id=run_id,
        method_name=method_name,
        status="failed",
        failure=failure,
        waiters=[requester],
        message_id=deterministic_id("dead-lettered", m.message_id),
    )
    for to, message, key in method_outcome_routes(outcome):
        out.add(to, message, key=key)
