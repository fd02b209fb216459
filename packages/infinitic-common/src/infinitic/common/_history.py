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

from infinitic.common._commands import upgrade_command
from infinitic.common._errors import CorruptedValueError, MessageDecodeError
from infinitic.common._serialization import unpack
from infinitic.common._topics import workflow_state_key

#: The format of a stored workflow state. 4: a task's record may hold the outcomes handed to the
#: code before a retry (``earlier_outcomes``) and a step may deliver a ``retry``; 3: typed command
#: records (one kind per record); 2: the archive of settled history; 1: the whole history in the
#: state. Formats 1 to 3 are read (format 3 as is: it is format 4 without retried outcomes),
#: the command records of 1 and 2 converted (see ``upgrade_command``).
WORKFLOW_STATE_FORMAT = 4
#: The format of an archived history chunk. 3: written with state format 4; 2: typed command
#: records; 1: written with state format 2 (read, converted).
HISTORY_CHUNK_FORMAT = 3
_TYPED_SINCE = {"state": 3, "history chunk": 2}
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


def _checked_format(key: str, what: str, found: Any, current: int) -> int:
    known = isinstance(found, int) and not isinstance(found, bool)
    if known and 1 <= found <= current:
        return int(found)
    formats = ", ".join(map(str, range(1, current + 1)))
    if known and found > current:
        raise CorruptedValueError(
            key,
            f"{what} format {found} is newer than this version reads (formats {formats}): a "
            "newer Infinitic wrote it; upgrade this process to read it",
        )
    raise CorruptedValueError(
        key, f"unknown {what} format {found!r} (this version reads formats {formats})"
    )


#: The history fields (maps by id in a state, lists in a chunk) and the id of their records.
_HISTORY_ITEMS = (("steps", None), ("commands", "command_id"), ("signals", "signal_id"))


def _check_shapes(key: str, what: str, data: Mapping[str, Any], by_id: bool) -> None:
    """Raise unless the history fields of ``data`` have the shapes readers rely on."""
    for name, id_field in _HISTORY_ITEMS:
        value = data.get(name)
        if value is None:
            continue
        mapped = by_id and id_field is not None
        items = value.values() if mapped and isinstance(value, dict) else value
        if not isinstance(value, dict if mapped else list) or not all(
            isinstance(i, dict) and (id_field is None or isinstance(i.get(id_field), str))
            for i in items
        ):
            shape = "a map of records by id" if mapped else "a list of records"
            raise CorruptedValueError(key, f"the {name} of this {what} are not {shape}")
    archive = data.get("archive", [])
    if not isinstance(archive, list) or not all(isinstance(k, str) for k in archive):
        raise CorruptedValueError(key, f"the archive of this {what} is not a list of keys")


def _typed_commands(key: str, what: str, found: int, commands: Any) -> Any:
    """``commands`` (a list, or a map by id) of a value of format ``found``, typed."""
    if found >= _TYPED_SINCE[what] or not commands:
        return commands
    try:
        if isinstance(commands, dict):
            return {cid: upgrade_command(c) for cid, c in commands.items()}
        return [upgrade_command(c) for c in commands]
    except ValueError as e:
        raise CorruptedValueError(key, f"a command of this {what} of format {found}: {e}") from e


def workflow_state_data(key: str, raw: Any) -> dict[str, Any]:
    """The state (plain data) of a stored value ``raw`` (decoded from msgpack) of any readable
    format, its command records in their typed form.

    Raises:
        CorruptedValueError: ``raw`` is not a workflow state, or of a newer format (names the
            key and the formats).
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("state"), dict):
        raise CorruptedValueError(key, "not a workflow state")
    found = _checked_format(key, "state", raw.get("format"), WORKFLOW_STATE_FORMAT)
    state: dict[str, Any] = raw["state"]
    _check_shapes(key, "state", state, by_id=True)
    if found < _TYPED_SINCE["state"] and state.get("commands"):
        state = {**state, "commands": _typed_commands(key, "state", found, state["commands"])}
    return state


def decode_history_chunk(key: str, data: bytes) -> dict[str, list[Any]]:
    """The steps, commands and signals of an archived chunk (plain data, commands typed).

    Raises:
        CorruptedValueError: the value is not a chunk of a known format (names the key).
    """
    try:
        raw = unpack(data)
    except MessageDecodeError as e:
        raise CorruptedValueError(key, str(e)) from e
    if not isinstance(raw, dict):
        raise CorruptedValueError(key, f"not a history chunk (found {type(raw).__name__})")
    found = _checked_format(key, "history chunk", raw.get("format"), HISTORY_CHUNK_FORMAT)
    _check_shapes(key, "history chunk", raw, by_id=False)
    chunk = {name: list(raw.get(name) or []) for name in ("steps", "commands", "signals")}
    chunk["commands"] = _typed_commands(key, "history chunk", found, chunk["commands"])
    return chunk


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
    """The stored state of an instance with its whole history (plain data, as stored, command
    records in their typed form whatever format stored them), or None when there is none.

    Raises:
        CorruptedValueError: the state or one of its chunks is unreadable, missing or of a
            newer format.
    """
    key = workflow_state_key(workflow_name, workflow_id)
    stored = await storage.get(key)
    if stored is None:
        return None
    try:
        raw = unpack(stored.value)
    except MessageDecodeError as e:
        raise CorruptedValueError(key, str(e)) from e
    state = workflow_state_data(key, raw)
    archive: list[str] = list(state.get("archive") or [])
    if not archive:
        return {k: v for k, v in state.items() if k not in ARCHIVE_FIELDS}
    return merge_history(state, await read_history_chunks(storage.get_many, key, archive))
