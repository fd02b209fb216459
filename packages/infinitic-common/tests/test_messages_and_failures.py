from __future__ import annotations

import pytest

from infinitic.common import (
    MAX_PREVIOUS_FAILURES,
    attempt_failure,
    decode_message,
    encode_message,
    exception_from_failure,
    failure_from_exception,
    method_failure,
    pack,
)
from infinitic.common._messages import ExecuteTask, MethodOutcome, Requester, method_outcome_failure
from infinitic.exceptions import (
    MessageDecodeError,
    RemoteError,
    TaskFailedError,
    WorkflowFailedError,
    WorkflowTaskFailedError,
)


class InsufficientFunds(Exception):
    def __init__(self, account: str, missing: int) -> None:
        super().__init__(f"{account} misses {missing}")
        self.account = account
        self.missing = missing


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xc1", "not a msgpack value"),
        (pack([1, 2]), "not an Infinitic message envelope"),
        (pack({"v": 9, "t": "ExecuteTask", "b": {}}), "unsupported envelope version 9"),
        (pack({"v": 1, "t": "Nope", "b": {}}), "unknown message type 'Nope'"),
        (pack({"v": 1, "t": "ExecuteTask", "b": {"task_id": 1}}), "invalid ExecuteTask"),
    ],
)
def test_bad_messages_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(MessageDecodeError, match=reason):
        decode_message(data)


def test_messages_round_trip() -> None:
    m = ExecuteTask(
        task_id="t",
        service_name="S",
        method_name="m",
        method_args=[1],
        requester=Requester.client("c"),
        meta={"k": b"\xff"},
    )
    assert decode_message(encode_message(m)) == m


def test_failure_chain_survives_serialization() -> None:
    try:
        raise InsufficientFunds("alice", 30)
    except InsufficientFunds as e:
        user = e
    chain = WorkflowFailedError(
        "W",
        "wf-1",
        "wire",
        "wf-1",
        TaskFailedError(
            "Bank", "withdraw", "t-1", RemoteError("x.InsufficientFunds", "alice misses 30")
        ),
    )
    info = failure_from_exception(chain)
    rebuilt = exception_from_failure(type(info).model_validate(info.model_dump()))
    assert isinstance(rebuilt, WorkflowFailedError)
    assert isinstance(rebuilt.cause, TaskFailedError)
    assert rebuilt.cause.service_name == "Bank"
    leaf = exception_from_failure(failure_from_exception(user))
    assert isinstance(leaf, RemoteError)
    assert leaf.class_name.endswith("InsufficientFunds")
    assert leaf.attributes == {"account": "alice", "missing": 30}
    assert "raise InsufficientFunds" in leaf.stack


def test_a_task_failure_keeps_its_earlier_attempts_up_to_the_limit() -> None:
    previous = None
    for attempt in range(1, MAX_PREVIOUS_FAILURES + 4):
        previous = attempt_failure(ValueError(f"attempt {attempt}"), previous)
    assert previous is not None
    rebuilt = exception_from_failure(type(previous).model_validate(previous.model_dump()))
    messages = []
    error = rebuilt
    while error is not None:
        assert isinstance(error, RemoteError)
        messages.append(error.message)
        error = error.previous  # type: ignore[assignment]
    last = MAX_PREVIOUS_FAILURES + 3
    assert messages == [f"attempt {n}" for n in range(last, last - MAX_PREVIOUS_FAILURES - 1, -1)]
    # the chain goes along when the failure is the cause of another
    wrapped = failure_from_exception(TaskFailedError("Bank", "debit", "t-1", rebuilt))
    assert wrapped.cause is not None
    assert wrapped.cause.previous is not None
    assert wrapped.cause.previous.message == f"attempt {last - 1}"


def test_a_method_failure_says_whether_workflow_code_raised_it() -> None:
    own = method_failure(KeyError("k"), "W", "wf-1")
    assert own.kind == "workflow_task_failed"
    assert own.id == "wf-1"
    rebuilt = exception_from_failure(own)
    assert isinstance(rebuilt, WorkflowTaskFailedError)
    assert isinstance(rebuilt.cause, RemoteError)
    assert rebuilt.cause.class_name == "KeyError"
    awaited = method_failure(TaskFailedError("Bank", "debit", "t-1", None), "W", "wf-1")
    assert awaited.kind == "task_failed"


def test_a_method_outcome_keeps_the_failure_of_another_instance() -> None:
    child = failure_from_exception(WorkflowFailedError("Child", "wf-2", "run", "wf-2"))
    outcome = MethodOutcome(
        workflow_name="Parent",
        workflow_id="wf-1",
        method_run_id="wf-1",
        method_name="run",
        status="failed",
        failure=child,
    )
    seen = method_outcome_failure(outcome)
    assert seen is not None
    assert seen.id == "wf-1"
    assert seen.cause is not None
    assert seen.cause.id == "wf-2"
    own = outcome.model_copy(
        update={"failure": child.model_copy(update={"id": "wf-1", "workflow_name": "Parent"})}
    )
    seen = method_outcome_failure(own)
    assert seen is not None
    assert seen.cause is None
