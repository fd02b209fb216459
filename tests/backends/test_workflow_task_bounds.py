"""Workflow task timeouts and retries (issue 12, item 9) on real backends. Public API only."""

from __future__ import annotations

import asyncio

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import WorkflowFailedError

from .conftest import Stack
from .workflow_tasks import ATTEMPTS, FAILING, QUICK_RETRY, Flaky, Spinner


@pytest.fixture(autouse=True)
def _reset() -> None:
    ATTEMPTS.clear()
    FAILING["attempts"] = 1


@pytest.mark.parametrize("isolation", ["loop", "thread"])
async def test_a_timed_out_workflow_task_is_retried_then_fails(
    stack: Stack, isolation: str
) -> None:
    worker = stack.worker(workflow_task_isolation=isolation)
    worker.add_workflow(Spinner, task_timeout=0.3, task_retry=QUICK_RETRY)
    async with worker, InfiniticClient(transport=stack.transport) as client:
        assert await asyncio.wait_for(client.new_workflow(Spinner).run(), 30) == (
            "done after 2 attempts"
        )
        FAILING["attempts"] = 1000
        deferred = await client.dispatch(client.new_workflow(Spinner).run)
        with pytest.raises(WorkflowFailedError, match=r"ran past its timeout of 0\.3 s"):
            await asyncio.wait_for(deferred, 30)
        assert ATTEMPTS[deferred.id] == 3  # the first attempt and the policy's 2 retries


async def test_a_declared_retry_policy_applies(stack: Stack) -> None:
    worker = stack.worker()
    worker.add_workflow(Flaky)
    async with worker, InfiniticClient(transport=stack.transport) as client:
        assert await asyncio.wait_for(client.new_workflow(Flaky).run(), 30) == (
            "done after 2 attempts"
        )
