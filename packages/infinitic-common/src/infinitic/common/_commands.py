"""The commands of a workflow's history: one typed record per kind of command.

Workflow code creates commands (a task, a child workflow, a timer, ...); the history records each
one at the step and position where the code created it, and then its outcome. Every record has
the fields of :class:`CommandBase` and only those of its own kind; :data:`CommandRecord` is the
union of the kinds, told apart by ``kind`` (which every encoding holds).

Before state format 3 (history chunk format 2), one record held every kind, with a ``name`` and
all the fields of all kinds; :func:`upgrade_command` converts such a record, and
:func:`is_legacy_command` recognises one (a typed record has no ``name``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from infinitic.common._failures import FailureInfo

Status = Literal["ongoing", "completed", "failed", "canceled", "timed_out", "unknown"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "canceled", "timed_out", "unknown"})


class CommandBase(BaseModel):
    """What every command record holds: where the code created it, and how it ended.

    ``step`` is the step whose workflow task created the command, ``position`` its index among
    the commands of its method run, ``delivered_step`` the step that handed its outcome to the
    code. Unknown fields are refused, so a record of another shape is never misread.
    """

    model_config = ConfigDict(extra="forbid")

    if TYPE_CHECKING:
        kind: str  # each kind declares it as a literal

    command_id: str
    method_run_id: str
    position: int
    step: int
    status: Status = "ongoing"
    value: Any = None
    failure: FailureInfo | None = None
    delivered_step: int | None = None

    @model_serializer(mode="wrap")
    def _with_kind(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # ``kind`` is a default, which exclude_defaults would drop: readers need it.
        return {"kind": self.kind, **handler(self)}

    @property
    def name(self) -> str:
        """What the command is about (``Service.method``, a channel, a patch id), compared with
        the code's when a history is replayed."""
        return ""

    @property
    def arguments(self) -> list[Any]:
        """The arguments compared with the code's in strict replays."""
        return []

    def done_at_creation(self) -> bool:
        """True for a command complete once created (nothing ever comes back for it)."""
        return False

    def describe(self) -> str:
        return f"{self.kind} {self.name}" if self.name else self.kind


class EarlierOutcome(BaseModel):
    """An outcome of a task that the code was handed (at ``delivered_step``) before
    ``retry_tasks`` ran the task again: replays hand it at that step again."""

    model_config = ConfigDict(extra="forbid")

    status: Status
    value: Any = None
    failure: FailureInfo | None = None
    delivered_step: int


class TaskCommand(CommandBase):
    """A task of a service. ``retry_sequence`` counts the retries asked for by
    ``retry_tasks``; ``timeout_at`` is when the caller stops waiting; ``earlier_outcomes`` are
    the outcomes handed to the code before such retries (oldest first), the record's own fields
    being the latest one."""

    kind: Literal["task"] = "task"
    service_name: str
    method_name: str
    args: list[Any] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, bytes] = Field(default_factory=dict)
    timeout_at: float | None = None
    retry_sequence: int = 0
    earlier_outcomes: list[EarlierOutcome] = Field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.service_name}.{self.method_name}"

    def delivered_at(self, step: int) -> TaskCommand:
        """The outcome handed to the code at ``step``: this record, or an earlier outcome
        (with this record's other fields) when the task was retried since."""
        if self.delivered_step == step or not self.earlier_outcomes:
            return self
        for earlier in self.earlier_outcomes:
            if earlier.delivered_step == step:
                return self.model_copy(update=dict(earlier))
        return self

    @property
    def arguments(self) -> list[Any]:
        return self.args


class ChildWorkflowCommand(CommandBase):
    """A method of a new child workflow (its id is the command id)."""

    kind: Literal["workflow"] = "workflow"
    workflow_name: str
    method_name: str
    args: list[Any] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, bytes] = Field(default_factory=dict)
    timeout_at: float | None = None

    @property
    def name(self) -> str:
        return f"{self.workflow_name}.{self.method_name}"

    @property
    def arguments(self) -> list[Any]:
        return self.args


class MethodCommand(CommandBase):
    """A method run on an existing instance (``target_workflow_id``, awaited) or on every
    instance with ``tag`` (complete once sent)."""

    kind: Literal["method"] = "method"
    workflow_name: str
    method_name: str
    args: list[Any] = Field(default_factory=list)
    target_workflow_id: str | None = None
    tag: str | None = None
    timeout_at: float | None = None

    @property
    def name(self) -> str:
        return f"{self.workflow_name}.{self.method_name}"

    @property
    def arguments(self) -> list[Any]:
        return self.args

    def done_at_creation(self) -> bool:
        return self.target_workflow_id is None


class SignalCommand(CommandBase):
    """A signal sent to a channel of an instance (``target_workflow_id``) or of every instance
    with ``tag``; complete once sent."""

    kind: Literal["signal"] = "signal"
    workflow_name: str
    channel_name: str
    data: Any = None
    type_names: list[str] = Field(default_factory=list)
    target_workflow_id: str | None = None
    tag: str | None = None

    @property
    def name(self) -> str:
        return f"{self.workflow_name}.{self.channel_name}"

    @property
    def arguments(self) -> list[Any]:
        return [self.data]

    def done_at_creation(self) -> bool:
        return True


class ReceiveCommand(CommandBase):
    """Receiving signals of a channel of this instance: up to ``limit`` of them (``received``
    so far), of a type and matching a filter if given."""

    kind: Literal["receive"] = "receive"
    channel_name: str
    limit: int | None = None
    type_name: str | None = None
    filter: str | None = None
    received: int = 0

    @property
    def name(self) -> str:
        return self.channel_name


class TimerCommand(CommandBase):
    """A timer, due at ``due_at`` (the workflow's clock)."""

    kind: Literal["timer"] = "timer"
    due_at: float


class InlineCommand(CommandBase):
    """A local side effect run once by ``inline()``; its value or failure is recorded."""

    kind: Literal["inline"] = "inline"

    def done_at_creation(self) -> bool:
        return True


class PatchCommand(CommandBase):
    """The mark of a ``patched(patch_id)`` that returned True."""

    kind: Literal["patch"] = "patch"
    patch_id: str

    @property
    def name(self) -> str:
        return self.patch_id

    def done_at_creation(self) -> bool:
        return True


#: A command as the history records it: one of the kinds, told apart by ``kind``.
CommandRecord = Annotated[
    TaskCommand
    | ChildWorkflowCommand
    | MethodCommand
    | SignalCommand
    | ReceiveCommand
    | TimerCommand
    | InlineCommand
    | PatchCommand,
    Field(discriminator="kind"),
]

_NOTHING: tuple[Any, ...] = (None, 0, "", [], {})  # the defaults of the single record
_COMMON = ("command_id", "method_run_id", "position", "step", "kind", "status", "value")
_COMMON_OPTIONAL = ("failure", "delivered_step")
_OWN: dict[str, tuple[str, ...]] = {
    "task": ("service_name", "method_name", "args", "tags", "meta", "timeout_at", "retry_sequence"),
    "workflow": ("workflow_name", "method_name", "args", "tags", "meta", "timeout_at"),
    "method": ("workflow_name", "method_name", "args", "target_workflow_id", "timeout_at"),
    "signal": ("workflow_name", "channel_name", "type_names", "target_workflow_id"),
    "receive": ("channel_name", "limit", "type_name", "filter", "received"),
    "timer": ("due_at",),
    "inline": (),
    "patch": (),
}


def is_legacy_command(raw: Any) -> bool:
    """True if ``raw`` (plain data) is a command record of the single-record form (before state
    format 3): every such record has a ``name``, no typed one has."""
    if type(raw) is dict:  # decoded data
        return "name" in raw
    if hasattr(raw, "__pydantic_fields__"):  # a typed record (an ABC check costs more)
        return False
    return isinstance(raw, Mapping) and "name" in raw


def upgrade_command(raw: Any) -> dict[str, Any]:
    """The typed form (plain data) of a command record of the single-record form.

    Fields that do not belong to the record's kind are dropped when they hold nothing (the old
    record's defaults); one that holds something is an error, never silently lost.

    Raises:
        ValueError: the record has an unknown kind, or a field its kind cannot hold.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"a command record is a map, not {type(raw).__name__}")
    kind = raw.get("kind")
    own = _OWN.get(kind) if isinstance(kind, str) else None
    if own is None:
        raise ValueError(f"command {raw.get('command_id')!r} has an unknown kind {kind!r}")
    out = {k: raw[k] for k in (*_COMMON, *_COMMON_OPTIONAL, *own) if k in raw}
    used: set[Any] = {*out, "name"}
    if kind == "patch":
        out["patch_id"] = raw.get("name")
    tags, args = raw.get("tags") or [], raw.get("args") or []
    if not isinstance(tags, list) or not isinstance(args, list):
        raise ValueError(f"{kind} command {raw.get('command_id')!r}: tags and args are lists")
    if kind in ("method", "signal") and raw.get("target_workflow_id") is None and len(tags) == 1:
        out["tag"] = tags[0]  # sent to the instances with this tag
        used.add("tags")
    if kind == "signal" and len(args) <= 1:
        out["data"] = args[0] if args else None
        used.add("args")
    left = sorted(str(k) for k, v in raw.items() if k not in used and v not in _NOTHING)
    if left:
        raise ValueError(
            f"{kind} command {raw.get('command_id')!r} holds what a {kind} command cannot: "
            f"{', '.join(left)}"
        )
    return out
