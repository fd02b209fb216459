"""The stored state of a workflow instance, and its versioned encoding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from infinitic.common import (
    HISTORY_CHUNK_FORMAT,
    FailureInfo,
    array_header,
    map_header,
    pack,
    unpack,
    workflow_history_key,
    workflow_state_key,
)
from infinitic.common.messages import (
    CommandRecord,
    Delivery,
    MethodRun,
    Requester,
    SendSignal,
    SignalRecord,
    Step,
)
from infinitic.exceptions import CorruptedValueError, MessageDecodeError

#: Format 2 added the archive of settled history (format 1 states are read as states whose
#: whole history is in them).
STATE_FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)
#: Settled steps gathered in a state before they are moved to an archived chunk.
HISTORY_CHUNK_STEPS = 64


class EarlyResult(BaseModel):
    """A command result that arrived before the workflow task that created the command ended."""

    status: str
    value: Any = None
    failure: FailureInfo | None = None


class ArchiveIntent(BaseModel):
    """Settled steps of a state about to move to the chunk ``key`` (see :func:`plan_archive`)."""

    key: str
    first_step: int
    steps: int


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
    # The history before ``steps``: chunks (oldest first) holding ``archived_steps`` steps with
    # the command records and signals they delivered (see plan_archive).
    archived_steps: int = 0
    archive: list[str] = Field(default_factory=list)
    archiving: ArchiveIntent | None = None

    def step_count(self) -> int:
        """The number of steps of the whole history (archived ones included)."""
        return self.archived_steps + len(self.steps)

    def terminated(self) -> bool:
        """True when every method run completed or was canceled (the instance can be
        forgotten). A failed workflow task keeps the instance, so it can be retried."""
        return bool(self.method_runs) and all(
            r.status in ("completed", "canceled") for r in self.method_runs.values()
        )


def state_key(workflow_name: str, workflow_id: str) -> str:
    """The storage key of a workflow instance's state."""
    return workflow_state_key(workflow_name, workflow_id)


def encode_state(state: WorkflowState, parts: EncodedParts | None = None) -> bytes:
    """Encode a state with its format version.

    With ``parts`` (kept by the caller with the state, from one encoding to the next), the
    history's settled items are packed once and reused: past steps, and commands whose outcome
    was delivered. The bytes decode to the same state as without it.
    """
    if parts is None:
        return pack(
            {"format": STATE_FORMAT_VERSION, "state": state.model_dump(exclude_defaults=True)}
        )
    return parts.encode(state)


_DONE_AT_CREATION = frozenset({"inline", "signal", "patch"})


class EncodedParts:
    """The packed settled items of one workflow state's history (see :func:`encode_state`).

    A step is settled once another step follows it (only the last one may still change, when
    tasks are retried). A command is settled once its outcome was delivered; its packed bytes
    are reused while its status, delivery step and retry sequence are the same (retrying a task
    changes them).
    """

    def __init__(self) -> None:
        self._steps: list[bytes] = []
        self._commands: dict[str, tuple[tuple[str, int | None, int], bytes]] = {}

    def drop_steps(self, count: int) -> None:
        """Forget the first ``count`` steps (moved to an archived chunk)."""
        del self._steps[:count]

    def encode(self, state: WorkflowState) -> bytes:
        body = state.model_dump(exclude_defaults=True, exclude={"steps", "commands"})
        head = pack(body)  # a map: its pairs follow its header
        pairs = [head[len(map_header(len(body))) :]]
        size = len(body)
        if state.steps:
            size += 1
            pairs.append(pack("steps") + self._packed_steps(state))
        if state.commands:
            size += 1
            pairs.append(pack("commands") + self._packed_commands(state))
        return b"".join(
            [
                map_header(2),
                pack("format"),
                pack(STATE_FORMAT_VERSION),
                pack("state"),
                map_header(size),
                *pairs,
            ]
        )

    def _packed_steps(self, state: WorkflowState) -> bytes:
        steps = state.steps
        settled = len(steps) - 1
        del self._steps[settled:]  # steps removed or not settled any more
        while len(self._steps) < settled:
            self._steps.append(pack(steps[len(self._steps)].model_dump(exclude_defaults=True)))
        last = pack(steps[-1].model_dump(exclude_defaults=True))
        return b"".join([array_header(len(steps)), *self._steps, last])

    def _packed_commands(self, state: WorkflowState) -> bytes:
        out = [map_header(len(state.commands))]
        cache = self._commands
        for command_id, command in state.commands.items():
            if command.status == "ongoing" or (
                command.delivered_step is None and command.kind not in _DONE_AT_CREATION
            ):
                cache.pop(command_id, None)
                out.append(pack(command_id) + pack(command.model_dump(exclude_defaults=True)))
                continue
            fingerprint = (command.status, command.delivered_step, command.retry_sequence)
            item = cache.get(command_id)
            if item is None or item[0] != fingerprint:
                packed = pack(command_id) + pack(command.model_dump(exclude_defaults=True))
                item = cache[command_id] = (fingerprint, packed)
            out.append(item[1])
        if len(cache) > len(state.commands):
            for gone in set(cache) - set(state.commands):
                del cache[gone]
        return b"".join(out)


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
    if raw.get("format") not in _READABLE_FORMATS:
        raise CorruptedValueError(
            key,
            f"unknown state format {raw.get('format')!r} (this version reads formats "
            f"{', '.join(map(str, _READABLE_FORMATS))}: was it written by a newer Infinitic?)",
        )
    try:
        return WorkflowState.model_validate(raw["state"])
    except ValidationError as e:
        raise CorruptedValueError(key, f"invalid workflow state: {e}") from e


# -- the archive of settled history ------------------------------------------------------------
#
# A step is settled once another follows it; a command once its outcome was delivered at a
# settled step (or, done at creation, once it was created at one); a signal once delivered at a
# settled step. Nothing settled ever changes again, so it can leave the state: the state stays
# the size of its recent history, and a step costs the same at the 10,000th as at the first.
#
# Moving is done in two stores of the state, so it never leaves an orphan nor loses anything:
# 1. plan_archive records the intent (the chunk key and how many steps) in the state, items
#    still in place; 2. at the next change of the state, any engine writes the chunk from those
#    items (the same bytes whoever writes them: they are settled) and then removes them, in the
#    state it stores next. A crash or a conflict between the two only repeats an identical write.


def plan_archive(state: WorkflowState, chunk_steps: int) -> bool:
    """Record the intent to archive the settled steps once ``chunk_steps`` of them gathered.

    Returns:
        True when an intent was recorded.
    """
    settled = len(state.steps) - 1
    if state.archiving is not None or chunk_steps <= 0 or settled < chunk_steps:
        return False
    first = state.archived_steps
    state.archiving = ArchiveIntent(
        key=workflow_history_key(state.workflow_name, state.workflow_id, state.incarnation, first),
        first_step=first,
        steps=settled,
    )
    return True


def _archived_items(
    state: WorkflowState, intent: ArchiveIntent
) -> tuple[list[Step], list[CommandRecord], list[SignalRecord]]:
    end = intent.first_step + intent.steps
    steps = state.steps[: intent.steps]
    if (
        intent.first_step != state.archived_steps
        or len(steps) != intent.steps
        or (steps and steps[0].index != intent.first_step)
    ):
        raise CorruptedValueError(
            workflow_state_key(state.workflow_name, state.workflow_id),
            f"archive of steps {intent.first_step}-{end - 1} does not match the steps it holds",
        )
    commands = [
        c
        for c in state.commands.values()
        if c.status != "ongoing"
        and (
            (c.delivered_step is not None and c.delivered_step < end)
            or (c.delivered_step is None and c.kind in _DONE_AT_CREATION and c.step < end)
        )
    ]
    delivered = {d.id for s in steps for d in s.deliveries if d.kind == "signal"}
    signals = [r for signal_id, r in state.signals.items() if signal_id in delivered]
    return steps, commands, signals


def archive_chunk(state: WorkflowState) -> tuple[str, bytes]:
    """The key and bytes of the chunk ``state.archiving`` announces (the same bytes whenever
    and wherever they are computed)."""
    intent = state.archiving
    assert intent is not None
    steps, commands, signals = _archived_items(state, intent)
    return intent.key, pack(
        {
            "format": HISTORY_CHUNK_FORMAT,
            "steps": [s.model_dump(exclude_defaults=True) for s in steps],
            "commands": [c.model_dump(exclude_defaults=True) for c in commands],
            "signals": [r.model_dump(exclude_defaults=True) for r in signals],
        }
    )


def apply_archive(state: WorkflowState, parts: EncodedParts) -> None:
    """Remove what ``state.archiving`` announced from the state (once its chunk is stored)."""
    intent = state.archiving
    assert intent is not None
    steps, commands, signals = _archived_items(state, intent)
    del state.steps[: len(steps)]
    parts.drop_steps(len(steps))
    for command in commands:
        del state.commands[command.command_id]
    for signal in signals:
        del state.signals[signal.signal_id]
    state.archived_steps += intent.steps
    state.archive.append(intent.key)
    state.archiving = None


def with_archive(state: WorkflowState, chunks: Sequence[Mapping[str, list[Any]]]) -> WorkflowState:
    """``state`` with the decoded chunks of its archive (in order) put back: the whole history."""
    steps = [Step.model_validate(s) for chunk in chunks for s in chunk["steps"]]
    commands = {
        r.command_id: r
        for r in (CommandRecord.model_validate(c) for chunk in chunks for c in chunk["commands"])
    }
    signals = {
        r.signal_id: r
        for r in (SignalRecord.model_validate(s) for chunk in chunks for s in chunk["signals"])
    }
    commands.update(state.commands)
    signals.update(state.signals)
    return state.model_copy(
        update={
            "steps": [*steps, *state.steps],
            "commands": commands,
            "signals": signals,
            "archived_steps": 0,
            "archive": [],
            "archiving": None,
        }
    )
