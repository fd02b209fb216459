"""Batched methods in the service executor: a task's handling (its acknowledgement) ends only
once its batch's outcomes are published."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

import infinitic.task_executor
from infinitic.common import decode_message
from infinitic.common.messages import ExecuteTask, Message, Requester, TaskOutcome
from infinitic.services import batch
from infinitic.task_executor import ServiceExecutor
from infinitic.transport import Consumer, Transport


class Recording(Transport):
    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []
        self.fail = False

    async def publish(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None = None,
        deliver_at: float | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((topic, decode_message(data)))

    async def subscribe(self, *args: object, **kwargs: object) -> Consumer:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class Doubler:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    @batch(max_messages=3, max_seconds=0.05)
    async def double(self, tasks: dict[str, int]) -> dict[str, int]:
        self.sizes.append(len(tasks))
        return {task_id: 2 * x for task_id, x in tasks.items()}


class DoublerApi:
    async def double(self, x: int) -> int: ...


def task(i: int) -> ExecuteTask:
    return ExecuteTask(
        task_id=f"t{i}",
        service_name="Doubler",
        method_name="double",
        method_args=[i],
        requester=Requester.client("c"),
    )


def test_public_api() -> None:
    assert sorted(infinitic.task_executor.__all__) == [
        "BatchResultMissingError",
        "ServiceExecutor",
        "TaskBatcher",
        "TaskEventHandler",
        "TaskRetryHandler",
        "TaskTimeoutError",
    ]


async def test_handled_once_the_batch_outcomes_are_published() -> None:
    transport, impl = Recording(), Doubler()
    executor = ServiceExecutor("Doubler", impl, transport=transport, interface=DoublerApi)
    assert executor.consumer_concurrency == 3
    first = asyncio.ensure_future(executor.handle(task(1)))
    await asyncio.sleep(0.01)
    assert not first.done()
    assert transport.sent == []
    await asyncio.gather(first, executor.handle(task(2)))  # flushed by time
    assert impl.sizes == [2]
    outcomes = [m for _, m in transport.sent if isinstance(m, TaskOutcome)]
    assert sorted((o.task_id, o.value) for o in outcomes) == [("t1", 2), ("t2", 4)]
    await executor.close()


async def test_a_failed_publication_fails_every_task_of_the_batch() -> None:
    transport, impl = Recording(), Doubler()
    executor = ServiceExecutor("Doubler", impl, transport=transport, interface=DoublerApi)
    transport.fail = True
    results = await asyncio.gather(
        *(executor.handle(task(i)) for i in range(3)), return_exceptions=True
    )
    assert impl.sizes == [3]  # flushed by size
    assert all(isinstance(r, ConnectionError) for r in results)
    await executor.close()


async def test_close_flushes_pending_batches() -> None:
    transport, impl = Recording(), Doubler()
    executor = ServiceExecutor("Doubler", impl, transport=transport, interface=DoublerApi)
    pending = asyncio.ensure_future(executor.handle(task(1)))
    await asyncio.sleep(0)
    await executor.close()
    await pending
    assert impl.sizes == [1]


def test_batch_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_messages"):
        batch(max_messages=0, max_seconds=1)
