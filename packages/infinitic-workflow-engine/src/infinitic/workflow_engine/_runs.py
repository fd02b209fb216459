"""Method runs seen from the state engine: which run a delivery is for, telling a run's waiters
how it ended (clients on their response topic, parent workflows on their engine topic), and
retrying the tasks of runs (``retry_tasks``). Pure functions of a state and an outbox."""

from __future__ import annotations

from infinitic.common import FailureInfo, TopicKind, method_outcome_routes, topic
from infinitic.common.messages import (
    Delivery,
    MethodOutcome,
    MethodRun,
    Requester,
    RetryTasks,
    TaskCommand,
    WorkflowMessage,
)
from infinitic.transport import Outbox
from infinitic.workflow_engine._handlers import task_message
from infinitic.workflow_engine._state import WorkflowState


def owner(state: WorkflowState, delivery: Delivery) -> str | None:
    """The method run a delivery is for."""
    if delivery.kind == "method":
        return delivery.id
    command_id = delivery.id
    if delivery.kind == "signal":
        signal = state.signals.get(delivery.id)
        if signal is None:
            return None
        command_id = signal.command_id
    record = state.commands.get(command_id)
    return record.method_run_id if record is not None else None


def retry_tasks(state: WorkflowState, m: RetryTasks, out: Outbox) -> bool:
    changed = False
    last = state.steps[-1] if state.steps and state.failed_task is not None else None
    for record in state.commands.values():
        if not isinstance(record, TaskCommand):
            continue
        if m.task_ids is not None and record.command_id not in m.task_ids:
            continue
        if m.service_name is not None and record.service_name != m.service_name:
            continue
        wanted = m.status or ("failed" if m.task_ids is None else None)
        if wanted is not None and record.status != wanted:
            continue
        if record.status != "ongoing":
            delivered_in_failed_step = last is not None and any(
                d.kind == "result" and d.id == record.command_id for d in last.deliveries
            )
            pending = any(d.id == record.command_id for d in state.pending + state.parked)
            if not (delivered_in_failed_step or pending):
                continue  # its outcome is part of the history: it cannot change any more
            if last is not None and delivered_in_failed_step:
                last.deliveries = [d for d in last.deliveries if d.id != record.command_id]
            state.pending = [d for d in state.pending if d.id != record.command_id]
            state.parked = [d for d in state.parked if d.id != record.command_id]
            record.status = "ongoing"
            record.value = None
            record.failure = None
            record.delivered_step = None
        record.retry_sequence += 1
        requester = Requester(
            workflow_name=state.workflow_name,
            workflow_id=state.workflow_id,
            method_run_id=record.method_run_id,
            command_id=record.command_id,
        )
        out.add(
            topic(TopicKind.TASK_EXECUTOR, record.service_name),
            task_message(record, requester),
        )
        changed = True
    if last is not None and not last.deliveries:
        state.steps.pop()  # the failed step had only the retried failures: forget it
        state.failed_task = None
    if changed and state.failed_runs:
        # a run that failed on the retried failures only goes on when they end again
        waiting = {owner(state, d) for d in state.parked}
        state.failed_runs = {r: f for r, f in state.failed_runs.items() if r in waiting}
    return changed


def release(
    state: WorkflowState,
    run: MethodRun,
    out: Outbox,
    *,
    status: str | None = None,
    failure: FailureInfo | None = None,
) -> None:
    """Tell the current waiters of ``run`` how it ended (by default: its own status).

    With ``status`` (a failed workflow task: the run itself goes on once retried), clients
    stay waiters, so they also hear how the run really ends, as Infinitic's clients do when
    they wait again; workflows stop waiting (their command has its outcome).
    """
    if status is None:
        notify_run(state, run, run.requesters, out)
        run.requesters = []
        return
    notify(
        state.workflow_name,
        state.workflow_id,
        run.method_run_id,
        run.method_name,
        status,
        None,
        failure,
        run.requesters,
        out,
    )
    run.requesters = [r for r in run.requesters if r.client_name is not None]


def notify_run(state: WorkflowState, run: MethodRun, waiters: list[Requester], out: Outbox) -> None:
    notify(
        state.workflow_name,
        state.workflow_id,
        run.method_run_id,
        run.method_name,
        run.status,
        run.value,
        run.failure,
        waiters,
        out,
    )


def notify_unknown(
    m: WorkflowMessage, method_name: str | None, requester: Requester, out: Outbox
) -> None:
    run_id = getattr(m, "method_run_id", m.workflow_id)
    failure = FailureInfo(
        kind="workflow_unknown",
        workflow_name=m.workflow_name,
        id=m.workflow_id,
        method_name=method_name,
        method_run_id=run_id,
    )
    notify(
        m.workflow_name,
        m.workflow_id,
        run_id,
        method_name or "",
        "unknown",
        None,
        failure,
        [requester],
        out,
    )


def notify(
    workflow_name: str,
    workflow_id: str,
    method_run_id: str,
    method_name: str,
    status: str,
    value: object,
    failure: FailureInfo | None,
    waiters: list[Requester],
    out: Outbox,
) -> None:
    if not waiters:
        return
    outcome = MethodOutcome(
        workflow_name=workflow_name,
        workflow_id=workflow_id,
        method_run_id=method_run_id,
        method_name=method_name,
        status=status,  # type: ignore[arg-type]
        value=value,
        failure=failure,
        waiters=list(waiters),
    )
    for to, message, key in method_outcome_routes(outcome):  # straight to each waiter
        out.add(to, message, key=key)
