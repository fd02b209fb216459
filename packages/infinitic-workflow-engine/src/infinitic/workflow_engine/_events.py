"""The events of a state engine cycle (see :mod:`infinitic.common.events`).

A cycle's events are read off what the cycle did, not recorded inside the engine's decisions:
the handled message (a command, a result, a workflow task outcome), the messages the cycle puts
in its outbox (dispatches of tasks, child workflows, method calls, signals, timers and workflow
tasks), the workflow tasks it runs inline, and the method runs whose status it changed. So the
engine only calls :class:`CycleEvents` at three points (start, each inline workflow task, before
sending), and nothing is computed when events are off.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from infinitic.common.events import (
    TASK_TYPE,
    WORKFLOW_TYPE,
    EventComponent,
    EventEmitter,
    EventRecorder,
    alongside,
    error_data,
)
from infinitic.common.messages import (
    CancelWorkflow,
    ChildWorkflowCommand,
    CommandResult,
    DispatchMethod,
    DispatchWorkflow,
    ExecuteTask,
    ExecuteWorkflowTask,
    Message,
    MethodCommand,
    Requester,
    RetryTasks,
    RetryWorkflowTask,
    SendSignal,
    TaskCommand,
    TimerCommand,
    WorkflowTaskCompleted,
    WorkflowTaskFailed,
)
from infinitic.common.tag_messages import DispatchWorkflowByTags, SendToWorkflowsByTag
from infinitic.transport import Outbox, Outgoing, Transport
from infinitic.workflow_engine._state import WorkflowState

logger = logging.getLogger("infinitic.workflow_engine")

_TASK_RESULT = {"completed": "taskCompleted", "failed": "taskFailed", "timed_out": "taskTimedOut"}
_REMOTE_RESULT = {
    "completed": "remoteMethodCompleted",
    "failed": "remoteMethodFailed",
    "canceled": "remoteMethodCanceled",
    "timed_out": "remoteMethodTimedOut",
    "unknown": "remoteMethodUnknown",
}
_METHOD_END = {
    "completed": "methodCompleted",
    "failed": "methodFailed",
    "canceled": "methodCanceled",
    "timed_out": "methodTimedOut",
}
_EXECUTOR = EventComponent.WORKFLOW_EXECUTOR.value
_STATE_ENGINE = EventComponent.STATE_ENGINE.value
_TASK_DISPATCH = TASK_TYPE + "dispatch"
_TASK_STARTED = TASK_TYPE + "started"
_TASK_COMPLETED = TASK_TYPE + "completed"
_TASK_FAILED = TASK_TYPE + "failed"


def _requester(requester: Requester | None) -> dict[str, Any] | None:
    if requester is None:
        return None
    if requester.client_name is not None:
        return {"clientName": requester.client_name}
    return {
        "workflowName": requester.workflow_name,
        "workflowId": requester.workflow_id,
        "methodId": requester.method_run_id,
    }


async def send_with_events(
    out: Outbox, transport: Transport, events: asyncio.Future[None] | None
) -> None:
    """Send ``out`` and wait for ``events`` (the publishing of the cycle's events, from
    :meth:`CycleEvents.finish`) before the cycle stores anything (see
    :func:`~infinitic.common.events.alongside`)."""
    await alongside(out.send(transport), events)


def workflow_task_events(
    recorder: EventRecorder,
    task: ExecuteWorkflowTask,
    outcome: WorkflowTaskCompleted | WorkflowTaskFailed | None,
) -> None:
    """The executor's events of one workflow task: Infinitic's task types with a
    ``workflows/executor`` source (``dispatch``, ``started``, then ``completed`` or ``failed``;
    nothing after ``started`` when it produced no outcome)."""
    data = {
        "workflowName": task.workflow_name,
        "workflowId": task.workflow_id,
        "workflowVersion": task.workflow_version,
        "taskName": "workflowTask",
    }
    subject = task.workflow_task_id
    add = recorder.records.append
    add((_TASK_DISPATCH, subject, _EXECUTOR, data))
    add((_TASK_STARTED, subject, _EXECUTOR, data))
    if isinstance(outcome, WorkflowTaskCompleted):
        add((_TASK_COMPLETED, subject, _EXECUTOR, data))
    elif isinstance(outcome, WorkflowTaskFailed):
        add((_TASK_FAILED, subject, _EXECUTOR, {**data, "error": error_data(outcome.failure)}))


class CycleEvents:
    """What one state engine cycle did, as event records.

    Args:
        state: the state the cycle starts from (None: no instance yet).
        message: the handled message.
    """

    __slots__ = ("_cursor", "_dead", "_message", "_result_open", "_runs", "_state", "recorder")

    def __init__(self, state: WorkflowState | None, message: Message) -> None:
        self.recorder = EventRecorder()
        self._state = state
        self._message = message
        self._cursor = 0  # outbox items already read
        self._dead = False  # reading this cycle's events failed: none are sent
        self._runs = (
            {i: r.status for i, r in state.method_runs.items()} if state is not None else {}
        )
        self._result_open = False  # a result for a command still ongoing
        if state is not None and isinstance(message, CommandResult):
            record = state.commands.get(message.command_id)
            self._result_open = record is not None and record.status == "ongoing"

    def started(self, state: WorkflowState | None) -> None:
        """After the handled message is applied: the events it caused by itself."""
        try:
            self._started(state)
        except Exception:
            self._broken()

    def _broken(self) -> None:
        """An event that cannot be read off the cycle never fails the cycle: this cycle's
        events are dropped (logged)."""
        logger.exception("events of %s %s dropped", self._message.TYPE, self._message.message_id)
        self.recorder.records.clear()
        self._state = None
        self._dead = True

    def _started(self, state: WorkflowState | None) -> None:
        if self._dead:
            return
        if self._state is None:
            self._state = state
        state = self._state
        if state is None:
            return
        m = self._message
        base = self._base(state)
        wid = state.workflow_id
        detail: dict[str, Any]
        if isinstance(m, DispatchWorkflow):
            detail = {"workflowTags": m.tags, "methodName": m.method_name, "methodId": wid}
            self._add("dispatch", wid, base, detail, {"requester": _requester(m.requester)})
        elif isinstance(m, DispatchMethod):
            detail = {"methodName": m.method_name, "methodId": m.method_run_id}
            detail["methodArgs"] = m.method_args
            self._add("dispatchMethod", wid, base, detail, {"requester": _requester(m.requester)})
        elif isinstance(m, CancelWorkflow):
            self._add("cancel", wid, base, None)
        elif isinstance(m, RetryTasks):
            detail = {"taskId": m.task_ids, "taskStatus": m.status, "serviceName": m.service_name}
            self._add("retryTask", wid, base, detail)
        elif isinstance(m, RetryWorkflowTask):
            self._add("retryExecutor", wid, base, None)
        elif isinstance(m, SendSignal):
            self._signal(state, m, base)
        elif isinstance(m, CommandResult) and self._result_open:
            self._result(state, m, base)
        elif isinstance(m, WorkflowTaskCompleted | WorkflowTaskFailed):
            self._outcome(state, m, base)

    def inline(self, out: Outbox, task: ExecuteWorkflowTask, outcome: Message) -> None:
        """A workflow task run inside the cycle (taken out of ``out``), before its outcome is
        applied: what the cycle dispatched before it, then the task's events."""
        try:
            self._inline(out, task, outcome)
        except Exception:
            self._broken()

    def _inline(self, out: Outbox, task: ExecuteWorkflowTask, outcome: Message) -> None:
        state = self._state
        if state is None or self._dead:
            return
        self._scan(state, out)
        base = self._base(state)
        detail = {"workflowTaskId": task.workflow_task_id}
        self._add("executorDispatched", state.workflow_id, base, detail)
        assert isinstance(outcome, WorkflowTaskCompleted | WorkflowTaskFailed)
        workflow_task_events(self.recorder, task, outcome)
        self._outcome(state, outcome, base)

    def finish(
        self,
        ended: bool,
        out: Outbox,
        emitter: EventEmitter,
        max_bytes: int | None,
    ) -> asyncio.Future[None] | None:
        """Before the cycle sends ``out``: its remaining dispatches, the method runs it ended
        and the end of the instance (``ended``); they are handed to ``emitter`` to publish
        while ``out`` is sent. Returns the publish to wait for (see :func:`send_with_events`),
        None without events."""
        try:
            return self._finish(ended, out, emitter, max_bytes)
        except Exception:
            self._broken()
            return None

    def _finish(
        self, ended: bool, out: Outbox, emitter: EventEmitter, max_bytes: int | None
    ) -> asyncio.Future[None] | None:
        state = self._state
        if self._dead:
            return None
        if state is not None:
            self._scan(state, out)
            base = self._base(state)
            canceled = False
            for run_id, run in state.method_runs.items():
                if run.status == self._runs.get(run_id, "ongoing"):
                    continue
                name = _METHOD_END.get(run.status)
                if name is None:
                    continue
                canceled |= run.status == "canceled"
                detail: dict[str, Any] = {"methodId": run_id, "methodName": run.method_name}
                if run.status == "completed":
                    detail["output"] = run.value
                elif run.failure is not None:
                    detail["error"] = error_data(run.failure)
                self._add(name, state.workflow_id, base, detail)
            if ended:
                self._add("canceled" if canceled else "completed", state.workflow_id, base, None)
        records = self.recorder.records
        if not records:
            return None
        return emitter.publish(emitter.encode(self._message.message_id, records, max_bytes))

    # -- the parts ---------------------------------------------------------------------------

    def _add(
        self,
        name: str,
        subject: str,
        base: dict[str, Any],
        detail: dict[str, Any] | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        data = base.copy()
        if detail is not None:
            data[name] = detail
        if extra is not None:
            data.update(extra)
        self.recorder.records.append((WORKFLOW_TYPE + name, subject, _STATE_ENGINE, data))

    def _base(self, state: WorkflowState) -> dict[str, Any]:
        return {"workflowName": state.workflow_name, "workflowVersion": state.workflow_version}

    def _signal(self, state: WorkflowState, m: SendSignal, base: dict[str, Any]) -> None:
        detail = {"channelName": m.channel_name, "signalId": m.signal_id, "signalData": m.data}
        self._add("signal", state.workflow_id, base, detail)
        record = state.signals.get(m.signal_id)
        if record is not None:
            detail = {"channelName": m.channel_name, "signalId": m.signal_id}
            self._add("signalReceived", state.workflow_id, base, detail)
        elif m.signal_id in state.recent_signal_ids and not any(
            b.signal_id == m.signal_id for b in state.buffered_signals
        ):  # handled now, and nothing receives it
            detail = {"channelName": m.channel_name, "signalId": m.signal_id}
            self._add("signalDiscarded", state.workflow_id, base, detail)

    def _result(self, state: WorkflowState, m: CommandResult, base: dict[str, Any]) -> None:
        record = state.commands.get(m.command_id)
        if record is None:
            return
        detail: dict[str, Any]
        if isinstance(record, TaskCommand):
            name = _TASK_RESULT.get(m.status)
            detail = {
                "taskId": record.command_id,
                "taskName": record.method_name,
                "serviceName": record.service_name,
            }
        elif isinstance(record, ChildWorkflowCommand | MethodCommand):
            name = _REMOTE_RESULT.get(m.status)
            target = getattr(record, "target_workflow_id", None) or record.command_id
            detail = {
                "workflowName": record.workflow_name,
                "workflowId": target,
                "methodName": record.method_name,
                "methodId": record.command_id,
            }
        elif isinstance(record, TimerCommand):
            name = "timerCompleted" if m.status == "completed" else None
            detail = {"timerId": record.command_id}
        else:
            return
        if name is None:
            return
        if m.status == "completed":
            if not isinstance(record, TimerCommand):
                detail["result" if isinstance(record, TaskCommand) else "output"] = m.value
        else:
            detail["error"] = error_data(m.failure)
        run = state.method_runs.get(record.method_run_id)
        extra = {
            "methodId": record.method_run_id,
            "methodName": run.method_name if run is not None else None,
        }
        self._add(name, state.workflow_id, base, detail, extra)

    def _outcome(
        self,
        state: WorkflowState,
        m: WorkflowTaskCompleted | WorkflowTaskFailed,
        base: dict[str, Any],
    ) -> None:
        detail: dict[str, Any] = {"workflowTaskId": m.workflow_task_id}
        if isinstance(m, WorkflowTaskCompleted):
            self._add("executorCompleted", state.workflow_id, base, detail)
            return
        detail["error"] = error_data(m.failure)
        self._add("executorFailed", state.workflow_id, base, detail)
        for run_id, run in state.method_runs.items():
            if run.status == "ongoing" and m.method_run_id in (None, run_id):
                failed: dict[str, Any] = {"methodId": run_id, "methodName": run.method_name}
                failed["error"] = error_data(m.failure)
                self._add("methodFailed", state.workflow_id, base, failed)

    def _scan(self, state: WorkflowState, out: Outbox) -> None:
        """The dispatch events of the outbox items added since the last scan."""
        items = out.items
        base: dict[str, Any] | None = None
        for item in items[self._cursor :]:
            event = _dispatch(state, item)
            if event is None:
                continue
            if base is None:
                base = self._base(state)
            name, detail, run_id = event
            run = state.method_runs.get(run_id) if run_id is not None else None
            extra = {"methodId": run_id, "methodName": run.method_name if run is not None else None}
            self._add(name, state.workflow_id, base, detail, extra)
        self._cursor = len(items)


def _dispatch(
    state: WorkflowState, item: Outgoing
) -> tuple[str, dict[str, Any], str | None] | None:
    """The dispatch event of an outgoing message, with the method run that dispatched it."""
    m = item.message
    if isinstance(m, ExecuteTask):
        detail = {
            "taskId": m.task_id,
            "taskName": m.method_name,
            "serviceName": m.service_name,
            "taskArgs": m.method_args,
            "taskRetrySequence": m.retry_sequence,
            "taskTags": m.tags,
        }
        return "taskDispatched", detail, m.requester.method_run_id
    if isinstance(m, ExecuteWorkflowTask):
        return "executorDispatched", {"workflowTaskId": m.workflow_task_id}, None
    if isinstance(m, DispatchWorkflowByTags):
        m = m.dispatch
    if isinstance(m, SendToWorkflowsByTag):
        try:
            inner: Message = m.decoded_command()
        except Exception:  # not ours to judge: the tag engine dead-letters it
            return None
        if not isinstance(inner, DispatchMethod | SendSignal):
            return None
        tag = m.tag
        m = inner
    else:
        tag = None
    if isinstance(m, DispatchWorkflow) and m.parent is not None:
        detail = {
            "workflowName": m.workflow_name,
            "workflowId": m.workflow_id,
            "methodName": m.method_name,
            "methodId": m.workflow_id,
        }
        return "remoteMethodDispatched", detail, m.parent.method_run_id
    if isinstance(m, DispatchMethod) and m.workflow_name:
        record = state.commands.get(m.method_run_id)
        detail = {
            "workflowName": m.workflow_name,
            "workflowId": m.workflow_id or None,
            "workflowTag": tag,
            "methodName": m.method_name,
            "methodId": m.method_run_id,
        }
        return "remoteMethodDispatched", detail, record.method_run_id if record else None
    if isinstance(m, SendSignal):
        record = state.commands.get(m.signal_id)
        if record is None:
            return None
        detail = {
            "workflowName": m.workflow_name,
            "workflowId": m.workflow_id or None,
            "workflowTag": tag,
            "channelName": m.channel_name,
            "signalId": m.signal_id,
        }
        return "signalDispatched", detail, record.method_run_id
    if isinstance(m, CommandResult) and item.deliver_at is not None and m.status == "completed":
        record = state.commands.get(m.command_id)
        if isinstance(record, TimerCommand):
            detail = {"timerId": m.command_id, "dueAt": record.due_at}
            return "timerDispatched", detail, record.method_run_id
    return None
