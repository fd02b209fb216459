"""The stored state of a workflow instance, and its versioned encoding."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from infinitic.common import (
    WORKFLOW_STATE_FORMAT,
    FailureInfo,
    array_header,
    map_header,
    pack,
    unpack,
    workflow_state_data,
    workflow_state_key,
)
from infinitic.common.messages import (
    ChildWorkflowCommand,
    CommandRecord,
    Delivery,
    MethodCommand,
    MethodRun,
    Requester,
    SendSignal,
    SignalRecord,
    Step,
    TaskCommand,
)
from infinitic.exceptions import CorruptedValueError, MessageDecodeError

#: 4: retried tasks' earlier outcomes and ``retry`` deliveries; 3: typed command records; 2: the
#: archive of settled history; 1: the whole history in the state. Older formats are read
#: (``workflow_state_data`` converts the command records of 1 and 2), a newer one is refused
#: with an error naming the formats.
STATE_FORMAT_VERSION = WORKFLOW_STATE_FORMAT

#: Commands that keep their instance until they end (see :meth:`WorkflowState.terminated`).
LIFETIME_COMMANDS = (TaskCommand, ChildWorkflowCommand, MethodCommand)


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
    failed_task: FailureInfo | None = None  # a task that failed as a whole: the instance waits
    # Method runs whose code raised: run id -> the failure. Such a run waits for
    # retry_workflow_task; the step that failed is not part of the history, and the deliveries
    # it held for the run, and those that come for it since, wait in ``parked`` (in order).
    failed_runs: dict[str, FailureInfo] = Field(default_factory=dict)
    parked: list[Delivery] = Field(default_factory=list)
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
        """True when every method run completed or was canceled and nothing the instance
        started is still under way (the instance can be forgotten). A failed workflow task
        keeps the instance, so it can be retried.

        A task, a child workflow or a method call dispatched by a method that has returned
        keeps the instance (its tags, its properties) until it ends, as in Infinitic: its
        result is applied, a cancel reaches it, and a method the workflow dispatched on its own
        instance finds it even when the dispatching method's completion came first. Receives
        and timers do not: nothing can observe them once every method has returned.
        """
        return (
            bool(self.method_runs)
            and all(r.status in ("completed", "canceled") for r in self.method_runs.values())
            and not any(
                c.status == "ongoing" and isinstance(c, LIFETIME_COMMANDS)
                for c in self.commands.values()
            )
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


#: What every encoded state starts with, and the keys of its packed parts (packed once).
_ENVELOPE = map_header(2) + pack("format") + pack(STATE_FORMAT_VERSION) + pack("state")
_STEPS_KEY = pack("steps")
_COMMANDS_KEY = pack("commands")


class EncodedParts:
    """The packed settled items of one workflow state's history (see :func:`encode_state`).

    A step is settled once another step follows it (only the last one may still change, when
    tasks are retried). A command is settled once its outcome was delivered; its packed bytes
    are reused while its status, delivery step and retry sequence are the same (retrying a task
    changes them). A running task is packed once too, and its bytes reused while it is the same
    record, still ongoing, with the same retry sequence: a task record changes in place only
    when its outcome comes (its status) or ``retry_tasks`` runs it again (its retry sequence),
    and a workflow of many tasks in parallel re-encoded every one of them at each of its cycles
    (1,000 parallel tasks: 0.5 million packs, 38 of 46 s).
    """

    def __init__(self) -> None:
        self._steps: list[bytes] = []
        # command id -> (fingerprint, packed bytes, the running task's record or None)
        self._commands: dict[str, tuple[tuple[str, int | None, int], bytes, object]] = {}

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
            pairs.append(_STEPS_KEY + self._packed_steps(state))
        if state.commands:
            size += 1
            pairs.append(_COMMANDS_KEY + self._packed_commands(state))
        return b"".join([_ENVELOPE, map_header(size), *pairs])

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
            running_task = isinstance(command, TaskCommand) and command.status == "ongoing"
            if not running_task and (
                command.status == "ongoing"
                or (command.delivered_step is None and not command.done_at_creation())
            ):
                cache.pop(command_id, None)
                out.append(pack(command_id) + pack(command.model_dump(exclude_defaults=True)))
                continue
            retries = command.retry_sequence if isinstance(command, TaskCommand) else 0
            fingerprint = (command.status, command.delivered_step, retries)
            record = command if running_task else None
            item = cache.get(command_id)
            if item is None or item[0] != fingerprint or item[2] is not record:
                packed = pack(command_id) + pack(command.model_dump(exclude_defaults=True))
                item = cache[command_id] = (fingerprint, packed, record)
            out.append(item[1])
        if len(cache) > len(state.commands):
            for gone in set(cache) - set(state.commands):
                del cache[gone]
        return b"".join(out)


def decode_state(key: str, data: bytes) -> WorkflowState:
    """Decode a stored state, of this format or an older one (whose command records are
    converted to the typed ones).

    Raises:
        CorruptedValueError: the value is not a state, or one of a newer format (names the key
            and the formats).
    """
    try:
        raw = unpack(data)
    except MessageDecodeError as e:
        raise CorruptedValueError(key, str(e)) from e
    try:
        return WorkflowState.model_validate(workflow_state_data(key, raw))
    except ValidationError as e:
        raise CorruptedValueError(key, f"invalid workflow state: {e}") from e


class DecodedStates:
    """The states an engine stored last, decoded, with their packed settled parts, within a
    budget of encoded bytes (LRU).

    An entry is taken out while a message is processed, so a state changed by a cycle that
    then fails to store it is never reused.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[bytes, WorkflowState, EncodedParts]] = OrderedDict()
        self._bytes = 0

    def take(self, key: str, stored: bytes) -> tuple[WorkflowState, EncodedParts] | None:
        """The decoded state of ``key`` if ``stored`` is what was written with it."""
        item = self._items.pop(key, None)
        if item is None:
            return None
        self._bytes -= len(item[0])
        return (item[1], item[2]) if item[0] == stored else None

    def keep(self, key: str, encoded: bytes, state: WorkflowState, parts: EncodedParts) -> None:
        if len(encoded) > self._max_bytes:
            return
        self._items[key] = (encoded, state, parts)
        self._bytes += len(encoded)
        while self._bytes > self._max_bytes:
            _, (old, _, _) = self._items.popitem(last=False)
            self._bytes -= len(old)
