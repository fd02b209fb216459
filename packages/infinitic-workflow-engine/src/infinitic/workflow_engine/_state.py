"""The stored state of a workflow instance, and its versioned encoding."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError

from infinitic.common import pack, unpack, workflow_state_key
from infinitic.common._errors import CorruptedValueError, MessageDecodeError
from infinitic.common._failures import FailureInfo
from infinitic.common._messages import (
    CommandRecord,
    Delivery,
    MethodRun,
    Requester,
    SendSignal,
    SignalRecord,
    Step,
)

STATE_FORMAT_VERSION = 1


class EarlyResult(BaseModel):
    """A command result that arrived before the workflow task that created the command ended."""

    status: str
    value: Any = None
    failure: FailureInfo | None = None


class WorkflowState(BaseModel):
    """Everything the engine knows about a workflow instance."""

    workflow_name: str
    workflow_id: str
    incarnation: str = ""  # random at creation: tells instances that reuse an id apart
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, bytes] = Field(default_factory=dict)
    parent: Requester | None = None
    workflow_version: int | None = None
    inline_digest: str = ""
    method_runs: dict[str, MethodRun] = Field(default_factory=dict)
    steps: list[Step] = Field(default_factory=list)
    commands: dict[str, CommandRecord] = Field(default_factory=dict)
    early_results: dict[str, EarlyResult] = Field(default_factory=dict)
    pending: list[Delivery] = Field(default_factory=list)
    running_task_id: str | None = None
    last_task_id: str | None = None  # the workflow task whose outcome ended the last step
    failed_task: FailureInfo | None = None
    task_attempt: int = 0
    signals: dict[str, SignalRecord] = Field(default_factory=dict)
    buffered_signals: list[SendSignal] = Field(default_factory=list)
    recent_signal_ids: list[str] = Field(default_factory=list)

    def terminated(self) -> bool:
        """True when every method run completed or was canceled (the instance can be
        forgotten). A failed workflow task keeps the instance, so it can be retried."""
        return bool(self.method_runs) and all(
            r.status in ("completed", "canceled") for r in self.method_runs.values()
        )


def state_key(workflow_name: str, workflow_id: str) -> str:
    """The storage key of a workflow instance's state."""
    return workflow_state_key(workflow_name, workflow_id)


def encode_state(state: WorkflowState) -> bytes:
    """Encode a state with its format version."""
    return pack({"format": STATE_FORMAT_VERSION, "state": state.model_dump(exclude_defaults=True)})


def decode_state(key: str, data: bytes) -> WorkflowState:
    """Decode a stored state.

    Raises:
        CorruptedValueError: the value is not a state of a known format (names the key).
    """
    try:
        raw = unpack(data)
    except MessageDecodeError as e:
        raise CorruptedValueError(key, str(e)) from e
    if not isinstance(raw, dict) or "state" not in raw:
        raise CorruptedValueError(key, "not a workflow state")
    if raw.get("format") != STATE_FORMAT_VERSION:
        raise CorruptedValueError(key, f"unknown state format {raw.get('format')!r}")
    try:
        return WorkflowState.model_validate(raw["state"])
    except ValidationError as e:
        raise CorruptedValueError(key, f"invalid workflow state: {e}") from e
