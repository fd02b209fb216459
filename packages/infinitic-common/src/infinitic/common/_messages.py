"""The messages exchanged by clients and engines, and their msgpack envelope.

Every message is a frozen pydantic model with a ``TYPE`` tag. On the wire a message is the
msgpack map ``{"v": 1, "t": TYPE, "b": body}``; :func:`decode_message` raises
:class:`~infinitic.exceptions.MessageDecodeError` for garbage, unknown types and invalid bodies, so
a poison message is recognised and dead-lettered instead of crashing a worker.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from infinitic.common._commands import CommandRecord, is_legacy_command, upgrade_command
from infinitic.common._commands import Status as Status  # defined here before: re-exported
from infinitic.common._errors import MessageDecodeError
from infinitic.common._failures import FailureInfo
from infinitic.common._ids import new_id
from infinitic.common._serialization import pack, unpack

ENVELOPE_VERSION = 1


class Requester(BaseModel):
    """Who waits for an outcome: a client (by name) or a workflow (a command of a method run)."""

    model_config = ConfigDict(frozen=True)

    client_name: str | None = None
    workflow_name: str | None = None
    workflow_id: str | None = None
    method_run_id: str | None = None
    command_id: str | None = None

    @classmethod
    def client(cls, name: str) -> Requester:
        return cls(client_name=name)


class Message(BaseModel):
    """Base class of every message."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    TYPE: ClassVar[str] = ""

    # Filled in by the validators below rather than by default factories: a dump that leaves
    # defaults out calls a field's factory to compare (a new id and a clock read per message
    # encoded, for nothing); an empty default compares for free.
    message_id: str = Field(default="", validate_default=True)
    emitted_at: float = Field(default=0.0, validate_default=True)

    @field_validator("message_id")
    @classmethod
    def _fresh_id(cls, value: str) -> str:
        return value or new_id()

    @field_validator("emitted_at")
    @classmethod
    def _now(cls, value: float) -> float:
        return value or time.time()


class WorkflowMessage(Message):
    """A message about one workflow instance (keyed by its id)."""

    workflow_name: str
    workflow_id: str


# --- history (the command records are in _commands) -----------------------------------------


class MethodRun(BaseModel):
    """A run of a workflow method on an instance (the main one, or one dispatched later)."""

    method_run_id: str
    method_name: str
    args: list[Any] = Field(default_factory=list)
    requesters: list[Requester] = Field(default_factory=list)
    status: Status = "ongoing"
    value: Any = None
    failure: FailureInfo | None = None


class Delivery(BaseModel):
    """Something handed to the workflow code at a step: a method start, a command result, a
    signal (``id`` is then the signal id), or a task that ``retry_tasks`` runs again after its
    outcome was handed to the code (``retry``: from this step on, its Deferred waits for the
    new outcome)."""

    kind: Literal["method", "result", "signal", "retry"]
    id: str


class SignalRecord(BaseModel):
    """A signal accepted by a receive command of a workflow instance."""

    signal_id: str
    channel_name: str
    data: Any = None
    command_id: str


class Step(BaseModel):
    """A workflow task: its index, its instant (the workflow's ``now``) and its deliveries.

    ``task_id`` is the workflow task last dispatched for the step (None in histories written
    before it was recorded): once the step is over, the one whose outcome the history holds,
    so an executor can tell whether a live instance it keeps ran exactly this history up to
    that step.
    """

    index: int
    instant: float
    deliveries: list[Delivery]
    task_id: str | None = None


class MethodOutcomeInfo(BaseModel):
    """How a method run ended during a workflow task."""

    method_run_id: str
    status: Status
    value: Any = None
    failure: FailureInfo | None = None


def _with_typed_commands(data: Any, field: str) -> Any:
    """``data`` with the command records of ``field`` in their typed form: a message sent by an
    earlier version holds records of the single-record form (see ``upgrade_command``)."""
    if not isinstance(data, dict):
        return data
    commands = data.get(field)
    if not isinstance(commands, list) or not any(is_legacy_command(c) for c in commands):
        return data
    upgraded = [upgrade_command(c) if is_legacy_command(c) else c for c in commands]
    return {**data, field: upgraded}


# --- workflow commands (workflow-cmd, forwarded to workflow-engine) ---------------------------


class DispatchWorkflow(WorkflowMessage):
    TYPE = "DispatchWorkflow"
    method_name: str
    method_args: list[Any]
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, bytes] = Field(default_factory=dict)
    requester: Requester | None = None
    parent: Requester | None = None


class DispatchMethod(WorkflowMessage):
    TYPE = "DispatchMethod"
    method_run_id: str
    method_name: str
    method_args: list[Any]
    requester: Requester | None = None


class SendSignal(WorkflowMessage):
    """A value sent to a channel of an instance. Discarded when nothing receives it."""

    TYPE = "SendSignal"
    channel_name: str
    signal_id: str
    data: Any = None
    type_names: list[str] = Field(default_factory=list)


class CancelWorkflow(WorkflowMessage):
    """Cancel an instance (all its method runs, and its ongoing child workflows)."""

    TYPE = "CancelWorkflow"
    reason: str = ""


class RetryWorkflowTask(WorkflowMessage):
    """Run again the workflow task that failed (after the code was fixed)."""

    TYPE = "RetryWorkflowTask"


class RetryTasks(WorkflowMessage):
    """Dispatch again the matching tasks of an instance (by id, status or service)."""

    TYPE = "RetryTasks"
    task_ids: list[str] | None = None
    status: str | None = None
    service_name: str | None = None


class CompleteTimers(WorkflowMessage):
    """Complete now the ongoing timers of an instance (of one method run, if given)."""

    TYPE = "CompleteTimers"
    method_run_id: str | None = None


class WaitMethod(WorkflowMessage):
    TYPE = "WaitMethod"
    method_run_id: str
    requester: Requester


# --- workflow engine events ------------------------------------------------------------------


class CommandResult(WorkflowMessage):
    TYPE = "CommandResult"
    command_id: str
    status: Status
    value: Any = None
    failure: FailureInfo | None = None


class WorkflowTaskOutcome(WorkflowMessage):
    """How a workflow task ended; names the exact state it was computed from.

    ``state_version`` is the stored version of the state that dispatched the task (the
    dispatch is stored as the next version) and ``incarnation`` the instance it belongs to: a
    state engine that reads an older version knows the outcome came early, and one that reads a
    newer version without this task running knows it is superseded.
    """

    workflow_task_id: str
    step: int
    state_version: int = 0
    incarnation: str = ""


class WorkflowTaskCompleted(WorkflowTaskOutcome):
    TYPE = "WorkflowTaskCompleted"
    new_commands: list[CommandRecord] = Field(default_factory=list)
    method_outcomes: list[MethodOutcomeInfo] = Field(default_factory=list)
    workflow_version: int | None = None
    inline_digest: str = ""

    @model_validator(mode="before")
    @classmethod
    def _typed_commands(cls, data: Any) -> Any:
        return _with_typed_commands(data, "new_commands")


class WorkflowTaskFailed(WorkflowTaskOutcome):
    """A workflow task failed (its code raised, or ran past its timeout).

    ``retry_index`` is the retry this attempt was (0: the first attempt); ``retry_delay``, set
    when the workflow's retry policy gives it another try, is the number of seconds after which
    the state engine sends it again (None: the failure stands).
    """

    TYPE = "WorkflowTaskFailed"
    failure: FailureInfo
    method_run_id: str | None = None
    retry_index: int = 0
    retry_delay: float | None = None


# --- workflow executor -----------------------------------------------------------------------


class ExecuteWorkflowTask(WorkflowMessage):
    """Run the last step of ``steps``.

    ``state_version`` and ``incarnation`` name the state the task was computed from (see
    WorkflowTaskOutcome); ``previous_task_id`` is the workflow task whose outcome the history
    holds for the step before, so an executor reuses a live instance only if that instance ran
    exactly that task. ``retry_index`` counts the retries of the step's workflow task made by
    the retry policy (0: the first attempt).
    """

    TYPE = "ExecuteWorkflowTask"
    workflow_task_id: str
    state_version: int = 0
    incarnation: str = ""
    previous_task_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, bytes] = Field(default_factory=dict)
    workflow_version: int | None = None
    method_runs: list[MethodRun]
    steps: list[Step]
    commands: list[CommandRecord]
    signals: list[SignalRecord] = Field(default_factory=list)
    complete_history: bool = True
    inline_digest: str = ""
    retry_index: int = 0

    @model_validator(mode="before")
    @classmethod
    def _typed_commands(cls, data: Any) -> Any:
        return _with_typed_commands(data, "commands")


# --- workflow events (notify waiters) ---------------------------------------------------------


class MethodOutcome(WorkflowMessage):
    TYPE = "MethodOutcome"
    method_run_id: str
    method_name: str
    status: Status
    value: Any = None
    failure: FailureInfo | None = None
    waiters: list[Requester] = Field(default_factory=list)


# --- service tasks ---------------------------------------------------------------------------


class ExecuteTask(Message):
    TYPE = "ExecuteTask"
    task_id: str
    service_name: str
    method_name: str
    method_args: list[Any]
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, bytes] = Field(default_factory=dict)
    retry_sequence: int = 0
    retry_index: int = 0
    requester: Requester
    last_failure: FailureInfo | None = None


class TaskOutcome(Message):
    TYPE = "TaskOutcome"
    task_id: str
    service_name: str
    method_name: str
    status: Status
    value: Any = None
    failure: FailureInfo | None = None
    requester: Requester
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, bytes] = Field(default_factory=dict)


def method_outcome_failure(m: MethodOutcome) -> FailureInfo | None:
    """The failure a waiter of ``m`` sees: None if the method completed, else a workflow error
    (failed, canceled, timed out or unknown) naming the workflow, with the cause chain."""
    if m.status == "completed":
        return None
    kind = {
        "failed": "workflow_failed",
        "canceled": "workflow_canceled",
        "timed_out": "workflow_timed_out",
        "unknown": "workflow_unknown",
    }.get(m.status, "workflow_failed")
    cause = m.failure
    if cause is not None and cause.kind == kind and cause.id == m.workflow_id:
        # this instance's own error (an unknown instance, a dead-lettered dispatch): one level;
        # another instance's (a child's failure re-raised here) stays in the chain
        cause = cause.cause
    return FailureInfo(
        kind=kind,
        workflow_name=m.workflow_name,
        id=m.workflow_id,
        method_name=m.method_name or None,
        method_run_id=m.method_run_id,
        cause=cause,
    )


_TYPES: dict[str, type[Message]] = {}

M = TypeVar("M", bound=type[Message])


def register_message(cls: M) -> M:
    """Register a message class under its ``TYPE`` so :func:`decode_message` knows it.

    Message classes defined in other modules or packages register themselves with this.
    """
    if not cls.TYPE:
        raise ValueError(f"{cls.__name__} has no TYPE")
    existing = _TYPES.get(cls.TYPE)
    if existing is not None and existing is not cls:
        raise ValueError(f"message type {cls.TYPE!r} is already registered by {existing!r}")
    _TYPES[cls.TYPE] = cls
    return cls


for _cls in (
    DispatchWorkflow,
    DispatchMethod,
    WaitMethod,
    SendSignal,
    CancelWorkflow,
    RetryWorkflowTask,
    RetryTasks,
    CompleteTimers,
    CommandResult,
    WorkflowTaskCompleted,
    WorkflowTaskFailed,
    ExecuteWorkflowTask,
    MethodOutcome,
    ExecuteTask,
    TaskOutcome,
):
    register_message(_cls)


def encode_message(message: Message) -> bytes:
    """Encode ``message`` in its msgpack envelope."""
    return pack(
        {"v": ENVELOPE_VERSION, "t": message.TYPE, "b": message.model_dump(exclude_defaults=True)}
    )


def decode_message(data: bytes) -> Message:
    """Decode an envelope written by :func:`encode_message`.

    Raises:
        MessageDecodeError: the bytes are not an envelope, the type is unknown or the body
            does not fit the type.
    """
    raw = unpack(data)
    if not isinstance(raw, dict) or "t" not in raw or "b" not in raw:
        raise MessageDecodeError("not an Infinitic message envelope")
    version = raw.get("v")
    if version != ENVELOPE_VERSION:
        raise MessageDecodeError(f"unsupported envelope version {version!r}")
    cls = _TYPES.get(raw["t"]) if isinstance(raw["t"], str) else None
    if cls is None:
        raise MessageDecodeError(f"unknown message type {raw['t']!r}")
    try:
        return cls.model_validate(raw["b"])
    except ValidationError as e:
        raise MessageDecodeError(f"invalid {cls.TYPE} message: {e}") from e
