"""Where a workflow's archived history lives, and how to read a whole stored state.

A workflow state keeps its recent history; the state engine moves settled steps (with the
command results and signals they delivered) into immutable chunks under their own keys, so a
step never rewrites the whole history. The state lists its chunks in ``archive`` (oldest first)
and the number of steps they hold in ``archived_steps``. This module is what readers outside the
engine (the client, the test kit) need to see the whole history again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from infinitic.common._errors import CorruptedValueError, MessageDecodeError
from infinitic.common._serialization import unpack
from infinitic.common._topics import workflow_state_key

#: The format of an archived history chunk.
HISTORY_CHUNK_FORMAT = 1
#: The keys of a stored state that describe its archive (absent from a merged state).
ARCHIVE_FIELDS = ("archive", "archived_steps", "archiving")


class _Stored(Protocol):
    @property
    def value(self) -> bytes: ...


class HistoryReader(Protocol):
    """What reading a whole state needs from a key-value storage."""

    async def get(self, key: str) -> Any: ...

    async def get_many(self, keys: Sequence[str]) -> Mapping[str, Any]: ...


def workflow_history_key(
    workflow_name: str, workflow_id: str, incarnation: str, first_step: int
) -> str:
    """The storage key of the archived chunk of an instance's history starting at a step."""
    return f"workflow-history:{workflow_name}:{workflow_id}:{incarnation}:{first_step}"


def decode_history_chunk(key: str, data: bytes) -> dict[str, list[Any]]:
    """The steps, commands and signals of an archived chunk (as stored: plain data).

    Raises:
        CorruptedValueError: the value is not a chunk of a known format (names the key).
    """
    try:
        raw = unpack(data)
    except MessageDecodeError as e:
        raise CorruptedValueError(key, str(e)) from e
    if not isinstance(raw, dict) or raw.get("format") != HISTORY_CHUNK_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise CorruptedValueError(key, f"not a history chunk of format 1 (found {found!r})")
    return {name: list(raw.get(name) or []) for name in ("steps", "commands", "signals")}


def missing_chunks(state_key: str, keys: Sequence[str], found: Mapping[str, Any]) -> None:
    """Raise if a chunk listed by a state is absent.

    Raises:
        CorruptedValueError: names the state and the first missing chunk.
    """
    for key in keys:
        if key not in found:
            raise CorruptedValueError(state_key, f"its archived history chunk {key} is missing")


async def read_history_chunks(
    get_many: Callable[[Sequence[str]], Awaitable[Mapping[str, Any]]],
    state_key: str,
    keys: Sequence[str],
) -> list[dict[str, list[Any]]]:
    """The decoded chunks ``keys`` (in their order) of the state stored under ``state_key``,
    read with ``get_many``.

    Raises:
        CorruptedValueError: a chunk is missing or unreadable (names it).
    """
    found = await get_many(keys)
    missing_chunks(state_key, keys, found)
    return [decode_history_chunk(k, found[k].value) for k in keys]


def merge_history(
    state: Mapping[str, Any], chunks: Sequence[Mapping[str, list[Any]]]
) -> dict[str, Any]:
    """A stored state (plain data) with its archived chunks put back: the whole history, and no
    archive fields. ``chunks`` are decoded chunks in the order of ``state["archive"]``."""
    merged = {k: v for k, v in state.items() if k not in ARCHIVE_FIELDS}
    steps: list[Any] = []
    commands: dict[str, Any] = {}
    signals: dict[str, Any] = {}
    for chunk in chunks:
        steps.extend(chunk["steps"])
        commands.update((c["command_id"], c) for c in chunk["commands"])
        signals.update((s["signal_id"], s) for s in chunk["signals"])
    steps.extend(state.get("steps") or [])
    commands.update(state.get("commands") or {})
    signals.update(state.get("signals") or {})
    for name, value in (("steps", steps), ("commands", commands), ("signals", signals)):
        if value:
            merged[name] = value
    return merged


async def read_workflow_state(
    storage: HistoryReader, workflow_name: str, workflow_id: str
) -> dict[str, Any] | None:
    """The stored state of an instance with its whole history (plain data, as stored), or None
    when there is none.

    Raises:
        CorruptedValueError: the state or one of its chunks is unreadable or missing.
    """
    key = workflow_state_key(workflow_name, workflow_id)
    stored = await storage.get(key)
    if stored is None:
        return None
    try:
        raw = unpack(stored.value)
    except MessageDecodeError as e:
        raise CorruptedValueError(key, str(e)) from e
    if not isinstance(raw, dict) or not isinstance(raw.get("state"), dict):
        raise CorruptedValueError(key, "not a workflow state")
    state: dict[str, Any] = raw["state"]
    archive: list[str] = list(state.get("archive") or [])
    if not archive:
        return {k: v for k, v in state.items() if k not in ARCHIVE_FIELDS}
    return merge_history(state, await read_history_chunks(storage.get_many, key, archive))
