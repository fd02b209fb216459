"""Batched tasks: grouped, flushed by size and by time, per-task results and retries (end to
end, cache on and off)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from infinitic.client import InfiniticClient

from .conftest import WorkerFactory
from .tagged import Maths, MathsImpl, MathsWorkflow


@pytest.fixture
def maths() -> MathsImpl:
    return MathsImpl()


@pytest.fixture
async def client(make_worker: WorkerFactory, maths: MathsImpl) -> AsyncIterator[InfiniticClient]:
    worker = make_worker()
    worker.add_service(maths, interface=Maths, concurrency=1)  # batches still fill up
    worker.add_workflow(MathsWorkflow, concurrency=10)
    async with worker, InfiniticClient(transport=worker.transport) as c:
        yield c


async def test_flushed_by_size(client: InfiniticClient, maths: MathsImpl) -> None:
    xs = list(range(10))
    assert await client.new_workflow(MathsWorkflow).doubles(xs) == [2 * x for x in xs]
    assert sorted(len(b) for b in maths.batches) == [5, 5]
    assert sorted(x for b in maths.batches for x in b.values()) == xs


async def test_flushed_by_time(client: InfiniticClient, maths: MathsImpl) -> None:
    started = time.monotonic()
    assert await client.new_workflow(MathsWorkflow).doubles([1, 2, 3]) == [2, 4, 6]
    assert time.monotonic() - started >= 0.2  # max_seconds of double
    assert [len(b) for b in maths.batches] == [3]


async def test_several_arguments_arrive_as_tuples(
    client: InfiniticClient, maths: MathsImpl
) -> None:
    pairs = [(1, 2), (3, 4), (5, 6), (7, 8)]
    assert await client.new_workflow(MathsWorkflow).adds(pairs) == [3, 7, 11, 15]
    assert sorted(len(b) for b in maths.batches) == [1, 3]
    assert sorted(v for b in maths.batches for v in b.values()) == pairs


async def test_grouped_by_batch_key(client: InfiniticClient, maths: MathsImpl) -> None:
    xs = [1, 101, 2, 102, 3, 103]
    assert await client.new_workflow(MathsWorkflow).keyed(xs) == [2 * x for x in xs]
    groups = [sorted(b.values()) for b in maths.batches]
    assert all(max(g) < 100 or min(g) > 100 for g in groups)  # never mixed
    assert sorted(x for g in groups for x in g) == sorted(xs)
    assert [1, 2, 3] in groups  # the consumer takes 5 at once: group "b" had to wait


async def test_a_missing_result_is_retried_for_that_task_only(
    client: InfiniticClient, maths: MathsImpl
) -> None:
    xs = [1, 2, 3, 4]
    assert await client.new_workflow(MathsWorkflow).squares(xs) == ["1=1", "2=4", "3=9", "4=16"]
    assert maths.forgotten == {1: 1, 3: 1}
    assert [sorted(b.values()) for b in maths.batches] == [[1, 2, 3, 4], [1, 3]]


async def test_a_missing_result_fails_only_the_tasks_concerned(
    client: InfiniticClient, maths: MathsImpl
) -> None:
    maths.forget_always = True
    results = await client.new_workflow(MathsWorkflow).squares([1, 2, 3, 4])
    assert results[1] == "2=4"
    assert results[3] == "4=16"
    for failed in (results[0], results[2]):
        assert "BatchResultMissingError" in failed
        assert "returned no result for task" in failed
    assert maths.forgotten == {1: 3, 3: 3}  # first attempt and two retries, each


async def test_a_batch_for_a_method_without_result_may_return_nothing(
    client: InfiniticClient, maths: MathsImpl
) -> None:
    xs = [1, 2, 3, 4, 5]
    assert await client.new_workflow(MathsWorkflow).notes(xs) == 5
    assert sorted(maths.noted) == xs
