from __future__ import annotations

import pytest

from infinitic.common import (
    decode_message,
    encode_message,
    exception_from_failure,
    failure_from_exception,
    pack,
)
from infinitic.common._messages import ExecuteTask, Requester
from infinitic.exceptions import (
    MessageDecodeError,
    RemoteError,
    TaskFailedError,
    WorkflowFailedError,
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
