"""A failed workflow task fails only its method (issue 12, item 2) on real backends. Public API
only."""

from __future__ import annotations

import asyncio

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import WorkflowFailedError
from infinitic.workflow_engine import state_key

from .conftest import Stack
from .lifetime import FIXED, OneFails


async def test_a_failed_method_leaves_the_instance_going(stack: Stack) -> None:
    FIXED["boom"] = False
    worker = stack.worker()
    worker.add_workflow(OneFails, concurrency=8)
    try:
        async with worker, InfiniticClient(transport=stack.transport) as client:
            main = await client.dispatch(client.new_workflow(OneFails).run)
            running = client.get_workflow_by_id(OneFails, main.id)
            failed = await client.dispatch(running.boom)
            with pytest.raises(WorkflowFailedError, match="bug in one method"):
                await asyncio.wait_for(failed, 20)
            await running.go.send("on")
            assert await asyncio.wait_for(main, 20) == "run:on"  # the other method went on
            key = state_key("OneFails", main.id)
            assert await stack.storage.key_value.get(key) is not None  # the failed run keeps it
            FIXED["boom"] = True
            await client.retry_workflow_task(running)
            assert await asyncio.wait_for(failed.result(), 20) == "fixed"
            for _ in range(400):
                if await stack.storage.key_value.get(key) is None:
                    break
                await asyncio.sleep(0.05)
            assert await stack.storage.key_value.get(key) is None
    finally:
        FIXED["boom"] = False
