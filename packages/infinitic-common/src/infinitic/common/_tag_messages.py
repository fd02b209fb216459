"""Messages of the tag engines (``workflow-tag`` and ``task-tag``) and their replies to clients.

Workflow tag engine (``workflow-tag:<Workflow>``, keyed by tag):
:class:`AddTagToWorkflow`, :class:`RemoveTagFromWorkflow`, :class:`DispatchWorkflowByTags` (starts
an instance with tags, one tag per hop, a ``customId:`` tag first), :class:`SendToWorkflowsByTag`
(a copy of a workflow command for every instance under a tag, page by page) and
:class:`GetWorkflowIdsByTag` (answered by :class:`WorkflowIdsPage`).

Service tag engine (``task-tag:<Service>``): :class:`AddTagToTask` and :class:`RemoveTagFromTask`
keyed by tag; :class:`SetDelegatedTaskData` and :class:`CompleteDelegatedTask` keyed by task id.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from infinitic.common._failures import FailureInfo
from infinitic.common._messages import (
    DispatchWorkflow,
    Message,
    Requester,
    Status,
    WorkflowMessage,
    decode_message,
    encode_message,
    register_message,
)

#: Tags starting with this prefix make an instance a singleton: at most one running instance
#: of a workflow holds a given ``customId:<x>`` tag.
CUSTOM_ID_PREFIX = "customId:"

#: The task meta key whose value groups the tasks of a batched method (same key, same batch).
BATCH_KEY = "batchKey"


def is_custom_id(tag: str) -> bool:
    """True when ``tag`` is a custom id tag (``customId:<x>``)."""
    return tag.startswith(CUSTOM_ID_PREFIX)


def tag_order(tags: list[str]) -> list[str]:
    """The order in which the tag engine processes the tags of a new instance: custom ids first
    (so a duplicate is detected before any other tag is added), then the others, sorted."""
    unique = sorted(set(tags))
    return [t for t in unique if is_custom_id(t)] + [t for t in unique if not is_custom_id(t)]


def workflow_tag_key(workflow_name: str, tag: str) -> str:
    """The key-set storage key holding the ids of the instances of a workflow with ``tag``."""
    return f"workflow-tag:{workflow_name}:{tag}"


def task_tag_key(service_name: str, tag: str) -> str:
    """The key-set storage key holding the ids of the ongoing tasks of a service with ``tag``."""
    return f"task-tag:{service_name}:{tag}"


# --- workflow tag engine ---------------------------------------------------------------------


class WorkflowTagMessage(Message):
    """A message of the workflow tag engine, keyed by ``tag``."""

    workflow_name: str
    tag: str


@register_message
class AddTagToWorkflow(WorkflowTagMessage):
    TYPE = "AddTagToWorkflow"
    workflow_id: str


@register_message
class RemoveTagFromWorkflow(WorkflowTagMessage):
    TYPE = "RemoveTagFromWorkflow"
    workflow_id: str


@register_message
class DispatchWorkflowByTags(WorkflowTagMessage):
    """Start ``dispatch`` once each of its tags holds its id; ``tag`` is the one to add now.

    On a custom id tag held by another instance, the start stops there: the requester waits for
    that instance's main method instead, and ``reply_to`` (a client) is told its id.
    """

    TYPE = "DispatchWorkflowByTags"
    dispatch: DispatchWorkflow
    reply_to: str | None = None
    request_id: str | None = None


@register_message
class SendToWorkflowsByTag(WorkflowTagMessage):
    """Send a copy of a workflow command to every instance with ``tag``.

    ``command`` is an encoded WorkflowMessage (any type handled on ``workflow-cmd``); each copy
    gets the instance's id. The engine reads one page of ids, sends their copies, then sends
    itself this message again with ``after`` set to the page's last id, so its memory stays
    bounded whatever the number of instances.
    """

    TYPE = "SendToWorkflowsByTag"
    command: bytes
    after: str | None = None

    @classmethod
    def of(cls, tag: str, command: WorkflowMessage) -> SendToWorkflowsByTag:
        """The fan-out of ``command`` (its ``workflow_id`` is ignored) to the instances of its
        workflow with ``tag``."""
        return cls(workflow_name=command.workflow_name, tag=tag, command=encode_message(command))

    def decoded_command(self) -> WorkflowMessage:
        """The command to copy.

        Raises:
            MessageDecodeError: it is not a known workflow message.
        """
        from infinitic.common._errors import MessageDecodeError

        command = decode_message(self.command)
        if not isinstance(command, WorkflowMessage):
            raise MessageDecodeError(f"{command.TYPE} is not a workflow command")
        return command


@register_message
class GetWorkflowIdsByTag(WorkflowTagMessage):
    """Ask for a page of the ids under ``tag``; answered on the client's response topic."""

    TYPE = "GetWorkflowIdsByTag"
    client_name: str
    request_id: str
    after: str | None = None
    limit: int = 1000


# --- replies to clients ----------------------------------------------------------------------


class ClientReply(Message):
    """A reply to a client's request, matched by ``request_id``."""

    request_id: str


@register_message
class WorkflowIdsPage(ClientReply):
    TYPE = "WorkflowIdsPage"
    workflow_ids: list[str]
    next_cursor: str | None = None


@register_message
class WorkflowDispatchResolved(ClientReply):
    """Which instance a start with a custom id runs on: a new one, or the existing one."""

    TYPE = "WorkflowDispatchResolved"
    workflow_id: str
    created: bool


# --- service tag engine ----------------------------------------------------------------------


class TaskTagMessage(Message):
    """A message of the service tag engine."""

    service_name: str


@register_message
class AddTagToTask(TaskTagMessage):
    TYPE = "AddTagToTask"
    tag: str
    task_id: str


@register_message
class RemoveTagFromTask(TaskTagMessage):
    TYPE = "RemoveTagFromTask"
    tag: str
    task_id: str


@register_message
class SetDelegatedTaskData(TaskTagMessage):
    """Sent by the executor before a delegated method runs: who waits for the task's outcome."""

    TYPE = "SetDelegatedTaskData"
    task_id: str
    method_name: str
    requester: Requester
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, bytes] = Field(default_factory=dict)


@register_message
class CompleteDelegatedTask(TaskTagMessage):
    """The outcome of a delegated task: from a client (completed), or from the executor when the
    delegated method itself failed for good (failed)."""

    TYPE = "CompleteDelegatedTask"
    task_id: str
    status: Status = "completed"
    value: Any = None
    failure: FailureInfo | None = None


def dispatch_route(
    dispatch: DispatchWorkflow, *, reply_to: str | None = None, request_id: str | None = None
) -> tuple[str, Message, str]:
    """Where a new instance's dispatch goes, as ``(topic, message, key)``.

    Without tags: straight to ``workflow-cmd`` (keyed by the workflow id). With tags: to the
    workflow tag engine, keyed by the first tag to add (a custom id first); each tag is added in
    turn and the last hop sends the dispatch to ``workflow-cmd``, so an instance never runs
    before its tags are stored and a crash at any hop loses nothing.
    """
    from infinitic.common._ids import deterministic_id
    from infinitic.common._topics import TopicKind, topic

    order = tag_order(dispatch.tags)
    if not order:
        return topic(TopicKind.WORKFLOW_CMD, dispatch.workflow_name), dispatch, dispatch.workflow_id
    return (
        topic(TopicKind.WORKFLOW_TAG, dispatch.workflow_name),
        DispatchWorkflowByTags(
            workflow_name=dispatch.workflow_name,
            tag=order[0],
            dispatch=dispatch,
            reply_to=reply_to,
            request_id=request_id,
            message_id=deterministic_id(dispatch.message_id, "tags"),
        ),
        order[0],
    )
