"""Method runs seen from the state engine: which run a delivery is for, telling a run's waiters
how it ended (clients on their response topic, parent workflows on their engine topic), and
retrying the tasks of runs (``retry_tasks``). Pure functions of a state and an outbox."""

from __future__ import annotations

from infinitic.common import FailureInfo, TopicKind, method_outcome_routes, topic
from infinitic.common.messages import (
    Delivery,
    EarlierOutcome,
    MethodOutcome,
    MethodRun,
    Requester,
    RetryTasks,
    Step,
    TaskCommand,
    WorkflowMessage,
)
from infinitic.transport import Outbox, RetryLater
from infinitic.workflow_engine._handlers import task_message
from infinitic.workflow_engine._state import WorkflowState

#: A retry of tasks that comes while the workflow task handing one of them runs waits this long.
RETRY_TASKS_WAIT_SECONDS = 0.05
#: How deep a failure chain is searched for a retried task.
MAX_CAUSES = 32


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
    """Run again the tasks ``m`` selects (by default the failed ones), as Infinitic does.

    An outcome the code never saw (pending, parked, or delivered by the failed step of a stuck
    instance) is forgotten. One the code was handed stays in the history
    (``earlier_outcomes``, for replays) and a ``retry`` delivery tells the code, at the next
    step, that the task's Deferred waits again: an await of it from then on gets the new
    outcome.

    Raises:
        RetryLater: a selected task's outcome is being handed to the code by the running
            workflow task (the retry comes after it).
    """
    last = state.steps[-1] if state.steps and state.failed_task is not None else None
    running = state.steps[-1].index if state.steps and state.running_task_id else None
    wanted = m.status or ("failed" if m.task_ids is None else None)
    selected = [
        record
        for record in state.commands.values()
        if isinstance(record, TaskCommand)
        and (m.task_ids is None or record.command_id in m.task_ids)
        and (m.service_name is None or record.service_name == m.service_name)
        and (wanted is None or record.status == wanted)
    ]
    if running is not None and any(r.delivered_step == running for r in selected):
        raise RetryLater(
            RETRY_TASKS_WAIT_SECONDS,
            f"retry of tasks of {state.workflow_name} {state.workflow_id} while its workflow "
            "task hands one of them to the code",
        )
    changed = False
    for record in selected:
        if record.status != "ongoing" and not _forget_outcome(state, record, last):
            if record.delivered_step is None:
                continue  # nowhere in the history: nothing to run again
            record.earlier_outcomes.append(
                EarlierOutcome(
                    status=record.status,
                    value=record.value,
                    failure=record.failure,
                    delivered_step=record.delivered_step,
                )
            )
            _enqueue_retry(state, Delivery(kind="retry", id=record.command_id))
        if record.status != "ongoing":
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
    if last is not None and all(d.kind == "retry" for d in last.deliveries):
        state.steps.pop()  # the failed step had only the retried failures: forget it
        state.pending[:0] = last.deliveries  # renewals it held come first in the next one
        state.failed_task = None
    if changed and state.failed_runs:
        # A run that failed on the retried failures only goes on when they end again: those
        # that were pending are gone, and one the code had let through its await is retried
        # (its ``retry`` delivery comes first: the await waits for the new outcome).
        waiting = {owner(state, d) for d in state.parked if d.kind != "retry"}
        retried = {r.command_id for r in selected}
        state.failed_runs = {
            r: f
            for r, f in state.failed_runs.items()
            if r in waiting and not _names_task(f, retried)
        }
        resumed = [d for d in state.parked if owner(state, d) not in state.failed_runs]
        if resumed:
            state.parked = [d for d in state.parked if d not in resumed]
            state.pending.extend(resumed)
    return changed


def _forget_outcome(state: WorkflowState, record: TaskCommand, last: Step | None) -> bool:
    """Take the outcome of ``record`` out of the deliveries if the code has not seen it (the
    failed step of a stuck instance, pending, parked); False if it is not there."""
    command_id = record.command_id
    in_failed_step = last is not None and any(
        d.kind == "result" and d.id == command_id for d in last.deliveries
    )
    queued = any(d.kind == "result" and d.id == command_id for d in state.pending + state.parked)
    if not (in_failed_step or queued):
        return False

    def kept(deliveries: list[Delivery]) -> list[Delivery]:
        # a ``retry`` delivery stays: the Deferred must still be renewed before a new result
        return [d for d in deliveries if not (d.kind == "result" and d.id == command_id)]

    if last is not None and in_failed_step:
        last.deliveries = kept(last.deliveries)
    state.pending = kept(state.pending)
    state.parked = kept(state.parked)
    return True


def _enqueue_retry(state: WorkflowState, delivery: Delivery) -> None:
    """Queue a ``retry`` delivery for the next step or, while its method run is failed, park it
    before the run's other deliveries: the step that failed sees the task ongoing again when
    it runs anew, as Infinitic's does."""
    if state.failed_runs and owner(state, delivery) in state.failed_runs:
        state.parked.insert(0, delivery)
    else:
        state.pending.append(delivery)


def _names_task(failure: FailureInfo, command_ids: set[str]) -> bool:
    """True if the failure chain of a method run holds the failure of one of the tasks."""
    link: FailureInfo | None = failure
    for _ in range(MAX_CAUSES):
        if link is None:
            return False
        if link.kind.startswith("task_") and link.id in command_ids:
            return True
        link = link.cause
    return False


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
