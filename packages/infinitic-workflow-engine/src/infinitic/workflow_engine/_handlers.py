"""The stateless workflow handlers around the state engine.

- command handler (``workflow-cmd``): checks and forwards commands to the state engine (the
  worker lets the state engine consume ``workflow-cmd`` itself; this handler is for separate
  deployments that want the relay);
- workflow task event handler (``workflow-task-events``): forwards outcomes of workflow tasks
  that an executor of an earlier version published there (executors now publish them to
  ``workflow-engine``, whose engine starts the commands they created);
- delay handler (``workflow-delay``): forwards due timers to the state engine;
- event handler (``workflow-events``): tells waiting clients and parent workflows how a method
  run ended.
"""

from __future__ import annotations

import logging
from typing import Any

from infinitic.common import (
    FailureInfo,
    TopicKind,
    check_entity_name,
    deterministic_id,
    method_outcome_routes,
    topic,
)
from infinitic.common.messages import (
    ChildWorkflowCommand,
    CommandRecord,
    CommandResult,
    DispatchMethod,
    DispatchWorkflow,
    ExecuteTask,
    Message,
    MethodCommand,
    MethodOutcome,
    Requester,
    SendSignal,
    SignalCommand,
    TaskCommand,
    TimerCommand,
    WorkflowMessage,
    WorkflowTaskCompleted,
    WorkflowTaskFailed,
)
from infinitic.common.tag_messages import SendToWorkflowsByTag, dispatch_route
from infinitic.transport import Outbox, Transport

logger = logging.getLogger("infinitic.workflow_engine")


class WorkflowCommandHandler:
    """Forwards the commands of ``workflow-cmd:<name>`` to ``workflow-engine:<name>``."""

    def __init__(self, workflow_name: str, transport: Transport) -> None:
        self.workflow_name = workflow_name
        self._transport = transport

    async def handle(self, message: WorkflowMessage) -> None:
        if message.workflow_name != self.workflow_name:
            raise ValueError(
                f"message for workflow {message.workflow_name!r} on the command topic of "
                f"{self.workflow_name!r}"
            )
        out = Outbox()
        out.add(
            topic(TopicKind.WORKFLOW_ENGINE, self.workflow_name), message, key=message.workflow_id
        )
        await out.send(self._transport)


def dispatch_command(
    workflow_name: str, workflow_id: str, command: CommandRecord, out: Outbox
) -> None:
    """Add to ``out`` the messages that start ``command``, created by a workflow task of the
    instance ``workflow_id`` (nothing for commands done at creation: inline, patch)."""
    requester = Requester(
        workflow_name=workflow_name,
        workflow_id=workflow_id,
        method_run_id=command.method_run_id,
        command_id=command.command_id,
    )
    if isinstance(command, TaskCommand):
        out.add(
            topic(TopicKind.TASK_EXECUTOR, check_entity_name(command.service_name)),
            task_message(command, requester),
        )
        if command.timeout_at is not None:
            failure = FailureInfo(
                kind="task_timed_out",
                service_name=command.service_name,
                method_name=command.method_name,
                id=command.command_id,
            )
            _timeout(workflow_name, workflow_id, command, failure, command.timeout_at, out)
    elif isinstance(command, ChildWorkflowCommand):
        _dispatch_child(command, requester, out)
        _workflow_timeout(workflow_name, workflow_id, command, command.command_id, out)
    elif isinstance(command, MethodCommand):
        _dispatch_method(command, requester, out)
        target = command.target_workflow_id or command.command_id
        _workflow_timeout(workflow_name, workflow_id, command, target, out)
    elif isinstance(command, SignalCommand):
        _send_signal(command, out)
    elif isinstance(command, TimerCommand):
        _delayed_result(
            workflow_name,
            workflow_id,
            command.command_id,
            "completed",
            command.due_at,
            None,
            command.due_at,
            out,
        )


def _workflow_timeout(
    workflow_name: str,
    workflow_id: str,
    command: ChildWorkflowCommand | MethodCommand,
    target_id: str,
    out: Outbox,
) -> None:
    if command.timeout_at is not None:
        failure = FailureInfo(
            kind="workflow_timed_out",
            workflow_name=command.workflow_name,
            method_name=command.method_name,
            id=target_id,
        )
        _timeout(workflow_name, workflow_id, command, failure, command.timeout_at, out)


def _timeout(
    workflow_name: str,
    workflow_id: str,
    command: CommandRecord,
    failure: FailureInfo,
    when: float,
    out: Outbox,
) -> None:
    """The result that ends ``command`` at ``when``, if nothing came back before."""
    if command.status == "ongoing":
        _delayed_result(
            workflow_name, workflow_id, command.command_id, "timed_out", None, failure, when, out
        )


def _delayed_result(
    workflow_name: str,
    workflow_id: str,
    command_id: str,
    status: str,
    value: Any,
    failure: FailureInfo | None,
    when: float,
    out: Outbox,
) -> None:
    out.add(
        topic(TopicKind.WORKFLOW_DELAY, workflow_name),
        CommandResult(
            workflow_name=workflow_name,
            workflow_id=workflow_id,
            command_id=command_id,
            status=status,  # type: ignore[arg-type]
            value=value,
            failure=failure,
            message_id=deterministic_id("delayed", status, command_id),
        ),
        deliver_at=when,
    )


def task_message(command: TaskCommand, requester: Requester) -> ExecuteTask:
    """The message that runs the task of ``command`` (again, for a retry sequence > 0)."""
    return ExecuteTask(
        task_id=command.command_id,
        service_name=command.service_name,
        method_name=command.method_name,
        method_args=command.args,
        tags=command.tags,
        meta=command.meta,
        requester=requester,
        retry_sequence=command.retry_sequence,
        message_id=deterministic_id("execute-task", command.command_id, command.retry_sequence),
    )


def _dispatch_child(command: ChildWorkflowCommand, requester: Requester, out: Outbox) -> None:
    name = check_entity_name(command.workflow_name)
    to, message, key = dispatch_route(  # with tags: through the workflow tag engine
        DispatchWorkflow(
            workflow_name=name,
            workflow_id=command.command_id,
            method_name=command.method_name,
            method_args=command.args,
            tags=command.tags,
            meta=command.meta,
            requester=requester,
            parent=requester,
            message_id=deterministic_id("dispatch-child", command.command_id),
        )
    )
    out.add(to, message, key=key)


def _dispatch_method(command: MethodCommand, requester: Requester, out: Outbox) -> None:
    name = check_entity_name(command.workflow_name)
    if command.target_workflow_id is None and command.tag:  # on every instance with the tag
        each = DispatchMethod(
            workflow_name=name,
            workflow_id="",
            method_run_id=command.command_id,  # each instance keeps its own runs
            method_name=command.method_name,
            method_args=command.args,
        )
        out.add(
            topic(TopicKind.WORKFLOW_TAG, name),
            SendToWorkflowsByTag.of(command.tag, each),
            key=command.tag,
        )
        return
    target = command.target_workflow_id or ""
    out.add(
        topic(TopicKind.WORKFLOW_CMD, name),
        DispatchMethod(
            workflow_name=name,
            workflow_id=target,
            method_run_id=command.command_id,
            method_name=command.method_name,
            method_args=command.args,
            requester=requester,
            message_id=deterministic_id("dispatch-method", command.command_id),
        ),
        key=target,
    )


def _send_signal(command: SignalCommand, out: Outbox) -> None:
    name = check_entity_name(command.workflow_name)
    target = command.target_workflow_id or ""
    signal = SendSignal(
        workflow_name=name,
        workflow_id=target,
        channel_name=command.channel_name,
        signal_id=command.command_id,
        data=command.data,
        type_names=command.type_names,
        message_id=deterministic_id("signal", command.command_id),
    )
    if command.target_workflow_id is None and command.tag:  # to every instance with the tag
        out.add(
            topic(TopicKind.WORKFLOW_TAG, name),
            SendToWorkflowsByTag.of(command.tag, signal),
            key=command.tag,
        )
        return
    out.add(topic(TopicKind.WORKFLOW_CMD, name), signal, key=target)


class WorkflowTaskEventHandler:
    """Handles ``workflow-task-events:<name>``: forwards outcomes to the state engine."""

    def __init__(self, workflow_name: str, transport: Transport) -> None:
        self.workflow_name = workflow_name
        self._transport = transport

    async def handle(self, message: Message) -> None:
        if not isinstance(message, WorkflowTaskCompleted | WorkflowTaskFailed):
            raise ValueError(f"unexpected {type(message).__name__} on workflow-task-events")
        out = Outbox()
        out.add(
            topic(TopicKind.WORKFLOW_ENGINE, self.workflow_name), message, key=message.workflow_id
        )
        await out.send(self._transport)


class WorkflowDelayHandler:
    """Handles ``workflow-delay:<name>``: due timers go to the state engine."""

    def __init__(self, workflow_name: str, transport: Transport) -> None:
        self.workflow_name = workflow_name
        self._transport = transport

    async def handle(self, message: Message) -> None:
        if not isinstance(message, WorkflowMessage):
            raise ValueError(f"unexpected {type(message).__name__} on workflow-delay")
        if message.workflow_name != self.workflow_name:
            # Refused here, so that it is dead-lettered on this topic, not after a forward.
            raise ValueError(
                f"a {message.TYPE} for workflow {message.workflow_name!r} on the delay topic of "
                f"{self.workflow_name!r}"
            )
        out = Outbox()
        out.add(
            topic(TopicKind.WORKFLOW_ENGINE, self.workflow_name), message, key=message.workflow_id
        )
        await out.send(self._transport)


class WorkflowEventHandler:
    """Handles ``workflow-events:<name>``: tells each waiter how a method run ended (the state
    engine tells waiters directly; this drains what reaches the topic)."""

    def __init__(self, workflow_name: str, transport: Transport) -> None:
        self.workflow_name = workflow_name
        self._transport = transport

    async def handle(self, message: Message) -> None:
        if not isinstance(message, MethodOutcome):
            raise ValueError(f"unexpected {type(message).__name__} on workflow-events")
        out = Outbox()
        for to, m, key in method_outcome_routes(message):
            out.add(to, m, key=key)
        await out.send(self._transport)
