"""A dead-lettered message that names nobody to tell is logged, never crashes the hook."""

from __future__ import annotations

import asyncio
import logging

import pytest

from infinitic.common import encode_message
from infinitic.common.messages import ExecuteWorkflowTask
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker
from infinitic.workflows import Workflow


class Idle(Workflow):
    async def run(self) -> int:
        return 1


async def test_a_workflow_task_without_steps_is_dead_lettered_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = InMemoryTransport()
    worker = InfiniticWorker(
        transport=transport,
        storage=InMemoryStorage(),
        max_redeliveries=1,
        redelivery_delay=0.01,
        inline_workflow_tasks=False,
    )
    worker.add_workflow(Idle)
    forged = ExecuteWorkflowTask(
        workflow_name="Idle",
        workflow_id="w-1",
        workflow_task_id="t-1",
        method_runs=[],
        steps=[],
        commands=[],
    )
    with caplog.at_level(logging.WARNING):
        async with worker:
            await transport.publish(
                "workflow-task-executor:Idle", encode_message(forged), key="w-1"
            )
            for _ in range(500):
                if transport.dead_letters():
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
    assert [d.original_topic for d in transport.dead_letters()] == ["workflow-task-executor:Idle"]
    assert "hook" not in caplog.text
    assert "nothing waits for it" in caplog.text


async def test_a_delayed_message_for_another_workflow_is_dead_lettered_on_the_delay_topic() -> None:
    from infinitic.common.messages import CommandResult

    transport = InMemoryTransport()
    worker = InfiniticWorker(
        transport=transport, storage=InMemoryStorage(), max_redeliveries=1, redelivery_delay=0.01
    )
    worker.add_workflow(Idle)
    stray = CommandResult(
        workflow_name="SomeOther", workflow_id="w-2", command_id="c-1", status="completed"
    )
    async with worker:
        await transport.publish("workflow-delay:Idle", encode_message(stray))
        for _ in range(500):
            if transport.dead_letters():
                break
            await asyncio.sleep(0.01)
    (letter,) = transport.dead_letters()
    assert letter.original_topic == "workflow-delay:Idle"
    assert "'SomeOther'" in letter.error
