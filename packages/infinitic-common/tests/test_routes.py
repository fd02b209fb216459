"""Where task outcomes go: an executor's direct result equals the routed outcome's."""

from __future__ import annotations

import pytest

from infinitic.common import FailureInfo, task_outcome_route, task_result_route, workflow_command
from infinitic.common.messages import CommandResult, Requester, TaskOutcome

WORKFLOW = Requester(workflow_name="Bank", workflow_id="w-1", method_run_id="w-1", command_id="c-1")
CAUSE = FailureInfo(kind="exception", class_name="ValueError", message="no funds")


def _outcome(requester: Requester, failed: bool) -> TaskOutcome:
    return TaskOutcome(
        task_id="c-1",
        service_name="BankService",
        method_name="withdraw",
        status="failed" if failed else "completed",
        value=None if failed else 42,
        failure=CAUSE if failed else None,
        requester=requester,
        message_id="outcome-1",
    )


@pytest.mark.parametrize("failed", [False, True])
def test_a_workflow_gets_the_same_result_with_or_without_the_task_outcome(failed: bool) -> None:
    outcome = _outcome(WORKFLOW, failed)
    routed = task_outcome_route(outcome)
    direct = task_result_route(
        WORKFLOW,
        "outcome-1",
        task_id="c-1",
        service_name="BankService",
        method_name="withdraw",
        status=outcome.status,
        value=outcome.value,
        cause=outcome.failure,
    )
    assert routed is not None
    assert direct[0] == routed[0] == "workflow-engine:Bank"
    assert direct[2] == routed[2] == "w-1"
    assert isinstance(direct[1], CommandResult)
    assert direct[1].model_dump(exclude={"emitted_at"}) == routed[1].model_dump(
        exclude={"emitted_at"}
    )
    if failed:  # the workflow sees a task failure caused by what the task raised
        assert direct[1].failure is not None
        assert direct[1].failure.kind == "task_failed"
        assert (direct[1].failure.service_name, direct[1].failure.id) == ("BankService", "c-1")
        assert direct[1].failure.cause == CAUSE


def test_a_client_gets_the_task_outcome_itself() -> None:
    outcome = _outcome(Requester.client("client-1"), False)
    assert task_outcome_route(outcome) == ("response:client-1", outcome, None)


def test_a_result_route_needs_a_workflow_requester() -> None:
    with pytest.raises(ValueError, match="task c-1"):
        task_result_route(
            Requester.client("client-1"),
            "outcome-1",
            task_id="c-1",
            service_name="BankService",
            method_name="withdraw",
            status="completed",
            value=1,
            cause=None,
        )


def test_only_a_workflow_s_command_gets_a_command_result() -> None:
    assert workflow_command(WORKFLOW) == ("Bank", "w-1", "c-1")
    assert workflow_command(Requester.client("client-1")) is None
    assert workflow_command(Requester(workflow_name="Bank", workflow_id="w-1")) is None
