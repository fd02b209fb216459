"""Typed command records: one kind per record, and the records of the single-record form."""

from __future__ import annotations

from typing import Any

import pytest

from infinitic.common import decode_message, encode_message, pack
from infinitic.common.messages import (
    ChildWorkflowCommand,
    CommandRecord,
    ExecuteWorkflowTask,
    InlineCommand,
    MethodCommand,
    PatchCommand,
    ReceiveCommand,
    SignalCommand,
    Step,
    TaskCommand,
    TimerCommand,
    WorkflowTaskCompleted,
    is_legacy_command,
    upgrade_command,
)
from infinitic.exceptions import MessageDecodeError

PLACE: dict[str, Any] = {"method_run_id": "run", "step": 0}


def every_kind() -> list[CommandRecord]:
    return [
        TaskCommand(command_id="a", position=0, **PLACE, service_name="S", method_name="m"),
        ChildWorkflowCommand(
            command_id="b", position=1, **PLACE, workflow_name="C", method_name="go", args=[1]
        ),
        MethodCommand(
            command_id="c", position=2, **PLACE, workflow_name="W", method_name="m", tag="t"
        ),
        SignalCommand(
            command_id="d",
            position=3,
            **PLACE,
            workflow_name="W",
            channel_name="ch",
            data={"x": 1},
            target_workflow_id="w1",
            status="completed",
        ),
        ReceiveCommand(command_id="e", position=4, **PLACE, channel_name="ch", limit=2),
        TimerCommand(command_id="f", position=5, **PLACE, due_at=12.5),
        InlineCommand(command_id="g", position=6, **PLACE, status="completed", value=42),
        PatchCommand(command_id="h", position=7, **PLACE, patch_id="p1", status="completed"),
    ]


def test_every_kind_round_trips_through_a_message_with_its_own_fields_only() -> None:
    commands = every_kind()
    message = WorkflowTaskCompleted(
        workflow_name="W", workflow_id="w", workflow_task_id="t", step=0, new_commands=commands
    )
    decoded = decode_message(encode_message(message))
    assert isinstance(decoded, WorkflowTaskCompleted)
    assert decoded.new_commands == commands
    assert [type(c) for c in decoded.new_commands] == [type(c) for c in commands]
    dumped = [c.model_dump(exclude_defaults=True) for c in commands]
    assert [d["kind"] for d in dumped] == [
        "task",
        "workflow",
        "method",
        "signal",
        "receive",
        "timer",
        "inline",
        "patch",
    ]
    assert dumped[5] == {
        "kind": "timer",
        "command_id": "f",
        "method_run_id": "run",
        "position": 5,
        "step": 0,
        "due_at": 12.5,
    }


def test_descriptions_name_the_kind_and_the_target() -> None:
    assert [c.describe() for c in every_kind()] == [
        "task S.m",
        "workflow C.go",
        "method W.m",
        "signal W.ch",
        "receive ch",
        "timer",
        "inline",
        "patch p1",
    ]
    assert [c.done_at_creation() for c in every_kind()] == [
        False,
        False,
        True,  # by tag
        True,
        False,
        False,
        True,
        True,
    ]


def legacy(kind: str, **fields: Any) -> dict[str, Any]:
    """A record of the single-record form, as stored before state format 3."""
    return {
        "command_id": "x",
        "method_run_id": "run",
        "position": 0,
        "step": 0,
        "kind": kind,
        **fields,
    }


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            legacy("task", name="S.m", service_name="S", method_name="m", retry_sequence=2),
            TaskCommand(
                command_id="x",
                position=0,
                **PLACE,
                service_name="S",
                method_name="m",
                retry_sequence=2,
            ),
        ),
        (
            legacy(
                "signal",
                name="W.ch",
                workflow_name="W",
                channel_name="ch",
                args=["hi"],
                tags=["t"],
                status="completed",
            ),
            SignalCommand(
                command_id="x",
                position=0,
                **PLACE,
                workflow_name="W",
                channel_name="ch",
                data="hi",
                tag="t",
                status="completed",
            ),
        ),
        (
            legacy(
                "method",
                name="W.m",
                workflow_name="W",
                method_name="m",
                target_workflow_id="w1",
                args=[1],
                timeout_at=5.0,
            ),
            MethodCommand(
                command_id="x",
                position=0,
                **PLACE,
                workflow_name="W",
                method_name="m",
                target_workflow_id="w1",
                args=[1],
                timeout_at=5.0,
            ),
        ),
        (
            legacy("patch", name="p1", status="completed"),
            PatchCommand(command_id="x", position=0, **PLACE, patch_id="p1", status="completed"),
        ),
        (
            legacy("timer", name="timer", due_at=3.0, args=[], tags=[], received=0),
            TimerCommand(command_id="x", position=0, **PLACE, due_at=3.0),
        ),
    ],
)
def test_records_of_the_single_record_form_are_converted(
    old: dict[str, Any], new: CommandRecord
) -> None:
    assert is_legacy_command(old)
    assert not is_legacy_command(new.model_dump(exclude_defaults=True))
    task = ExecuteWorkflowTask(
        workflow_name="W",
        workflow_id="w",
        workflow_task_id="t",
        method_runs=[],
        steps=[Step(index=0, instant=0.0, deliveries=[])],
        commands=[],
    )
    body = task.model_dump(exclude_defaults=True) | {"commands": [old]}
    decoded = decode_message(pack({"v": 1, "t": "ExecuteWorkflowTask", "b": body}))
    assert isinstance(decoded, ExecuteWorkflowTask)
    assert decoded.commands == [new]


@pytest.mark.parametrize(
    ("old", "reason"),
    [
        (legacy("teleport", name="x"), "unknown kind 'teleport'"),
        (legacy("timer", name="timer", due_at=1.0, service_name="S"), "cannot: service_name"),
        (legacy("signal", name="W.c", workflow_name="W", channel_name="c", args=[1, 2]), "args"),
        (legacy("method", name="W.m", workflow_name="W", method_name="m", tags={"": 1}), "lists"),
        (5, "a command record is a map, not int"),
    ],
)
def test_what_a_kind_cannot_hold_is_an_error_not_lost(old: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        upgrade_command(old)
    body = {"workflow_name": "W", "workflow_id": "w", "workflow_task_id": "t", "step": 0}
    data = pack({"v": 1, "t": "WorkflowTaskCompleted", "b": body | {"new_commands": [old]}})
    with pytest.raises(MessageDecodeError, match="invalid WorkflowTaskCompleted"):
        decode_message(data)


def test_a_typed_record_refuses_fields_of_other_kinds() -> None:
    raw = TimerCommand(command_id="x", position=0, **PLACE, due_at=1.0).model_dump()
    with pytest.raises(ValueError, match="service_name"):
        TimerCommand.model_validate(raw | {"service_name": "S"})
