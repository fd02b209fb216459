"""Pins the public names: users and outside test suites are written against them."""

from __future__ import annotations

import infinitic.common
import infinitic.exceptions
import infinitic.services
import infinitic.workflows


def test_workflows_api() -> None:
    assert sorted(infinitic.workflows.__all__) == sorted(
        [
            "Channel",
            "Deferred",
            "Receiving",
            "Workflow",
            "all_of",
            "any_of",
            "dispatch",
            "get_workflow_by_id",
            "get_workflow_by_tag",
            "inline",
            "new_service",
            "new_workflow",
            "patched",
            "timer",
        ]
    )


def test_services_api() -> None:
    assert sorted(infinitic.services.__all__) == sorted(
        [
            "ExponentialBackoff",
            "NoRetry",
            "RetryPolicy",
            "TaskContext",
            "batch",
            "delegated",
            "name",
            "retry",
            "task_context",
            "timeout",
        ]
    )


def test_exceptions_api() -> None:
    for name in [
        "TaskFailedError",
        "TaskTimedOutError",
        "TaskCanceledError",
        "WorkflowFailedError",
        "WorkflowCanceledError",
        "WorkflowTimedOutError",
        "WorkflowUnknownError",
        "WorkflowChangedError",
    ]:
        assert name in infinitic.exceptions.__all__
        assert issubclass(getattr(infinitic.exceptions, name), infinitic.exceptions.InfiniticError)


def test_every_exported_name_exists() -> None:
    for module in (infinitic.common, infinitic.exceptions, infinitic.services, infinitic.workflows):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
