"""Running tasks are packed once per record (issue 15): a workflow of 1,000 tasks in parallel
re-encoded every running one at each of its cycles. The bytes must still decode to the state
itself whatever happens to a task: its outcome, a retry, its record replaced."""

from __future__ import annotations

from typing import Any

from infinitic.common.messages import TaskCommand
from infinitic.workflow_engine import decode_state
from infinitic.workflow_engine._state import EncodedParts, WorkflowState, encode_state


def _task(cid: str, position: int, **fields: Any) -> TaskCommand:
    return TaskCommand(
        command_id=cid,
        method_run_id="wf",
        position=position,
        step=0,
        service_name="S",
        method_name="m",
        **fields,
    )


def test_running_tasks_encode_the_state_itself() -> None:
    state = WorkflowState(workflow_name="W", workflow_id="wf", incarnation="i")
    parts = EncodedParts()

    def same() -> None:
        plain = decode_state("k", encode_state(state)).model_dump()
        assert decode_state("k", encode_state(state, parts)).model_dump() == plain
        assert plain == state.model_dump()

    for i in range(20):
        state.commands[f"c{i}"] = _task(f"c{i}", i, args=[i])
    same()
    state.commands["c3"].status, state.commands["c3"].value = "completed", 3
    same()
    state.commands["c3"].delivered_step = 1
    same()
    retried = state.commands["c3"]  # retry_tasks: back to ongoing, a new sequence
    assert isinstance(retried, TaskCommand)
    retried.status, retried.value, retried.delivered_step = "ongoing", None, None
    retried.retry_sequence += 1
    same()
    # the same id, status and retry sequence, another record: its own bytes
    state.commands["c5"] = _task("c5", 5, args=["another"])
    same()
    del state.commands["c7"]
    same()


def test_a_running_task_is_packed_once(monkeypatch: Any) -> None:
    state = WorkflowState(workflow_name="W", workflow_id="wf", incarnation="i")
    state.commands = {f"c{i}": _task(f"c{i}", i) for i in range(50)}
    parts = EncodedParts()
    dumped: list[str] = []
    original = TaskCommand.model_dump

    def counting(self: TaskCommand, **kwargs: Any) -> dict[str, Any]:
        dumped.append(self.command_id)
        return original(self, **kwargs)

    monkeypatch.setattr(TaskCommand, "model_dump", counting)
    for _ in range(5):
        encode_state(state, parts)
    assert len(dumped) == 50  # once each, not once per encoding
    state.commands["c0"].status = "failed"
    encode_state(state, parts)
    assert dumped[50:] == ["c0"]
