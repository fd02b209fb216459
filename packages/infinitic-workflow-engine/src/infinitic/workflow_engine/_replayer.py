"""Replaying recorded workflow histories against (changed) workflow code."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from infinitic.common import workflow_version
from infinitic.common.messages import is_legacy_command, upgrade_command
from infinitic.exceptions import ConfigurationError
from infinitic.workflow_engine._runtime import CheckMode, WorkflowInstance
from infinitic.workflow_engine._state import WorkflowState, decode_state


def replay_history(
    workflow: type | Sequence[type],
    history: WorkflowState | Mapping[str, Any] | bytes,
    *,
    check_mode: CheckMode | str = CheckMode.SIMPLE,
) -> int:
    """Replay a recorded history against the current code of a workflow.

    Args:
        workflow: the workflow class (or its versions; the one the history ran is used).
        history: a whole history: a dict from ``client.get_workflow_state`` (or the test kit's
            ``history``; one saved from an earlier version, with command records of the
            single-record form, is converted), a WorkflowState, or the bytes of a stored state
            whose history was never archived (long histories are stored in chunks apart from
            the state).
        check_mode: how strictly the code must match the history.

    Returns:
        The number of steps replayed.

    Raises:
        WorkflowChangedError: the code no longer matches the history (names the position,
            what the history holds and what the code did).
    """
    steps, _ = _replay(workflow, history, CheckMode(check_mode), keep=lambda _: None)
    return steps


def replay_properties(
    workflow: type | Sequence[type],
    history: WorkflowState | Mapping[str, Any] | bytes,
    *,
    check_mode: CheckMode | str = CheckMode.SIMPLE,
) -> dict[str, Any]:
    """The properties of a workflow instance (the public attributes its code set on ``self``),
    rebuilt by replaying its history against its code, as a worker does: a state stores the
    history, not the properties. Workflow code only records commands, so the replay does
    nothing outside this process.

    Args and errors: those of :func:`replay_history`.
    """
    _, properties = _replay(workflow, history, CheckMode(check_mode), keep=_public_attributes)
    return properties


def _public_attributes(instance: WorkflowInstance) -> dict[str, Any]:
    return {k: v for k, v in vars(instance.instance).items() if not k.startswith("_")}


T = TypeVar("T")


def _replay(
    workflow: type | Sequence[type],
    history: WorkflowState | Mapping[str, Any] | bytes,
    check_mode: CheckMode,
    keep: Callable[[WorkflowInstance], T],
) -> tuple[int, T]:
    """Replay ``history``; the number of steps replayed, and what ``keep`` takes from the
    instance before it is closed."""
    if isinstance(history, bytes):
        state = decode_state("history", history)
    elif isinstance(history, WorkflowState):
        state = history
    else:
        state = WorkflowState.model_validate(_with_typed_commands(history))
    if state.archive:
        raise ConfigurationError(
            f"this state of {state.workflow_name} {state.workflow_id} holds only its recent "
            f"history ({len(state.archive)} archived chunk(s) are stored apart): pass the whole "
            "history, from client.get_workflow_state(...)"
        )
    classes = [workflow] if isinstance(workflow, type) else list(workflow)
    versions = {workflow_version(c): c for c in classes}
    version = state.workflow_version if state.workflow_version is not None else max(versions)
    cls = versions.get(version)
    if cls is None:
        raise ConfigurationError(f"the history ran version {version}; got {sorted(versions)}")
    steps = state.steps
    if state.running_task_id is not None or state.failed_task is not None:
        steps = steps[:-1]  # the last step has no recorded outcome yet
    instance = WorkflowInstance(
        cls,
        state.workflow_name,
        state.workflow_id,
        frozenset(state.tags),
        state.meta,
        check_mode,
    )
    try:
        for step in steps:
            instance.apply_step(
                step, state.method_runs, state.commands, replaying=True, signals=state.signals
            )
        kept = keep(instance)
    finally:
        instance.close()
    return len(steps), kept


def _with_typed_commands(history: Mapping[str, Any]) -> Mapping[str, Any]:
    commands = history.get("commands")
    if not isinstance(commands, Mapping) or not any(
        is_legacy_command(c) for c in commands.values()
    ):
        return history
    typed = {k: upgrade_command(c) if is_legacy_command(c) else c for k, c in commands.items()}
    return {**history, "commands": typed}
