"""The archive of a workflow's settled history: immutable chunks stored apart from its state.

A step is settled once another follows it; a command once its outcome was delivered at a settled
step (or, done at creation, once it was created at one); a signal once delivered at a settled
step. Nothing settled ever changes again, so it can leave the state: the state stays the size of
its recent history, and a step costs the same at the 10,000th as at the first. A task that did not
complete is the exception: ``retry_tasks`` (failed tasks by default) may run it again, so its
record stays in the state.

Moving is done in two stores of the state, so it never leaves an orphan nor loses anything:
1. :func:`plan_archive` records the intent (the chunk key and how many steps) in the state,
   items still in place; 2. at the next change of the state, any engine writes the chunk from
   those items (the same bytes whoever writes them: they are settled) and then removes them, in
   the state it stores next. A crash or a conflict between the two only repeats an identical
   write.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from infinitic.common import (
    HISTORY_CHUNK_FORMAT,
    merge_history,
    pack,
    read_history_chunks,
    workflow_history_key,
    workflow_state_key,
)
from infinitic.common.messages import CommandRecord, SignalRecord, Step, TaskCommand
from infinitic.exceptions import CorruptedValueError
from infinitic.storage import KeyValueStorage, VersionedValue
from infinitic.workflow_engine._state import (
    ArchiveIntent,
    EncodedParts,
    WorkflowState,
)
from infinitic.workflow_engine._storage_retry import with_storage_retry

logger = logging.getLogger("infinitic.workflow_engine")

#: Settled steps gathered in a state before they are moved to an archived chunk.
HISTORY_CHUNK_STEPS = 64
#: Archived chunks whose command ids an engine keeps (to tell a late duplicate result).
MAX_KNOWN_CHUNKS = 10_000


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
        and not (isinstance(c, TaskCommand) and c.status != "completed")  # retry_tasks may rerun
        and (
            (c.delivered_step is not None and c.delivered_step < end)
            or (c.delivered_step is None and c.done_at_creation() and c.step < end)
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
    return WorkflowState.model_validate(
        merge_history(state.model_dump(exclude_defaults=True), chunks)
    )


async def load_whole(storage: KeyValueStorage, key: str, state: WorkflowState) -> WorkflowState:
    """``state`` (stored under ``key``) with its archived chunks read back: the whole history.

    Raises:
        CorruptedValueError: a chunk is missing or unreadable (names it).
    """
    if not state.archive:
        return state
    chunks = await read_history_chunks(_retrying(storage), key, state.archive)
    return with_archive(state, chunks)


def _retrying(
    storage: KeyValueStorage,
) -> Callable[[Sequence[str]], Awaitable[dict[str, VersionedValue]]]:
    """``storage.get_many`` with the engine's storage retries."""

    async def get_many(keys: Sequence[str]) -> dict[str, VersionedValue]:
        return await with_storage_retry(storage.get_many, keys)

    return get_many


def _refers(state: WorkflowState | None, chunk_key: str) -> bool:
    """True if ``state`` lists the chunk ``chunk_key`` (archived, or about to be)."""
    return state is not None and (
        chunk_key in state.archive
        or (state.archiving is not None and state.archiving.key == chunk_key)
    )


class HistoryArchive:
    """What a state engine does with archived chunks: write the one a state planned, tell a
    duplicate result of an archived command, and delete the chunks of an ended instance."""

    def __init__(self, storage: KeyValueStorage, chunk_steps: int) -> None:
        self._storage = storage
        self._chunk_steps = chunk_steps
        # archived chunk key -> the ids of the commands it holds
        self._commands: OrderedDict[str, frozenset[str]] = OrderedDict()

    async def settle(self, state: WorkflowState, parts: EncodedParts) -> str | None:
        """Before ``state`` is stored: write the chunk it planned at an earlier store and take
        its items out, then plan the next one if enough steps gathered.

        Returns:
            The key of the chunk written, if any.
        """
        written = None
        if state.archiving is not None:
            written, chunk = archive_chunk(state)
            await with_storage_retry(self._storage.put, written, chunk)
            apply_archive(state, parts)
        plan_archive(state, self._chunk_steps)
        return written

    async def discard_if_unlisted(self, chunk_key: str, state: WorkflowState | None) -> None:
        """After a lost store that wrote ``chunk_key``: delete it if the fresh state does not
        list it (the instance ended meanwhile, its chunks deleted before this write landed)."""
        if not _refers(state, chunk_key):
            await self.delete([chunk_key])

    async def holds_result(self, key: str, state: WorkflowState, command_id: str) -> bool:
        """True if ``command_id`` is a command of the archived history (its result was delivered
        at a settled step: any result coming now is a duplicate)."""
        if not state.archive or command_id in state.commands or command_id in state.early_results:
            return False
        known = self._commands
        absent = [k for k in state.archive if k not in known]
        if absent:
            chunks = await read_history_chunks(_retrying(self._storage), key, absent)
            for chunk_key, chunk in zip(absent, chunks, strict=True):
                known[chunk_key] = frozenset(c["command_id"] for c in chunk["commands"])
        hit = False
        for chunk_key in state.archive:
            known.move_to_end(chunk_key)
            hit = hit or command_id in known[chunk_key]
        while len(known) > MAX_KNOWN_CHUNKS:
            known.popitem(last=False)
        return hit

    async def forget(self, state: WorkflowState) -> None:
        """Delete the archived history of an instance whose state was just deleted."""
        keys = list(state.archive)
        if state.archiving is not None:
            keys.append(state.archiving.key)
        await self.delete(keys)

    async def delete(self, keys: list[str]) -> None:
        for chunk_key in keys:
            self._commands.pop(chunk_key, None)
            try:
                await with_storage_retry(self._storage.delete, chunk_key)
            except Exception:  # the instance is gone already: a leftover chunk harms nothing
                logger.warning("archived history chunk %s not deleted", chunk_key, exc_info=True)
