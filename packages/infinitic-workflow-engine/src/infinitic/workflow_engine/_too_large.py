"""A workflow state grown past its storage backend's limit.

The backend refuses the value before anything is written
(:class:`~infinitic.exceptions.ValueTooLargeError`); waiting does not shrink it, so the engine
does not retry it. The instance stays at its last stored state, the message that made it grow
goes to its topic's dead-letter twin after its redeliveries, and the waiters of the instance's
ongoing method runs learn why at once, instead of waiting for an answer that cannot come.
"""

from __future__ import annotations

import logging

from infinitic.common import (
    FailureInfo,
    deterministic_id,
    failure_from_exception,
    method_outcome_routes,
)
from infinitic.common.messages import MethodOutcome, WorkflowMessage
from infinitic.exceptions import ValueTooLargeError
from infinitic.transport import Outbox
from infinitic.workflow_engine._state import WorkflowState

logger = logging.getLogger("infinitic.workflow_engine")


def state_too_large(
    state: WorkflowState, message: WorkflowMessage, error: ValueTooLargeError
) -> Outbox:
    """The failed outcomes telling the waiters of ``state``'s ongoing runs that its new state
    cannot be stored (clients stay waiters: a retry of the instance's task answers them)."""
    logger.error(
        "workflow %s %s: its state cannot be stored (%s); %s %s is dead-lettered after its "
        "redeliveries and the instance stays at its last stored state",
        state.workflow_name,
        state.workflow_id,
        error,
        message.TYPE,
        message.message_id,
    )
    failure = FailureInfo(
        kind="workflow_task_failed",
        workflow_name=state.workflow_name,
        id=state.workflow_id,
        cause=failure_from_exception(error),
    )
    out = Outbox()
    for run in state.method_runs.values():
        if run.status != "ongoing" or not run.requesters:
            continue
        outcome = MethodOutcome(
            workflow_name=state.workflow_name,
            workflow_id=state.workflow_id,
            method_run_id=run.method_run_id,
            method_name=run.method_name,
            status="failed",
            failure=failure,
            waiters=list(run.requesters),
            message_id=deterministic_id("too-large", message.message_id, run.method_run_id),
        )
        for to, m, key in method_outcome_routes(outcome):
            out.add(to, m, key=key)
    return out
