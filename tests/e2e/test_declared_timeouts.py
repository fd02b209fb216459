"""Timeouts and retries where users declare them, with Infinitic's precedence: a ``@timeout`` on a
workflow method bounds a client's waiting call (the workflow runs on); one on a class applies to
each method without its own; the worker's configuration wins over a declaration on the
implementation, which wins over nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Protocol

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import RemoteError, TaskFailedError, WorkflowTimedOutError
from infinitic.services import ExponentialBackoff, NoRetry, retry, timeout
from infinitic.storage import InMemoryStorage
from infinitic.workflow_engine import state_key
from infinitic.workflows import Channel, Workflow, new_service

from .conftest import WorkerFactory, running


class Waits(Workflow):
    go = Channel[str]()

    @timeout(seconds=0.3)
    async def until_told(self) -> str:
        return await self.go.receive()

    async def no_timeout(self) -> str:
        return "quick"


@timeout(seconds=0.3)
class WaitsEverywhere(Workflow):
    go = Channel[str]()

    async def until_told(self) -> str:
        return await self.go.receive()

    @timeout(seconds=5)
    async def longer(self) -> str:
        return await self.go.receive()


class Sleeper(Protocol):
    async def nap(self, seconds: float) -> str: ...


@retry(ExponentialBackoff(minimum_seconds=0.01, maximum_seconds=0.01, maximum_retries=3))
class SleeperImpl:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    @timeout(seconds=5)  # on the implementation: an execution timeout, unless configured
    async def nap(self, seconds: float) -> str:
        self.calls["nap"] += 1
        await asyncio.sleep(seconds)
        return "rested"


class Naps(Workflow):
    sleeper = new_service(Sleeper)

    async def nap(self, seconds: float) -> str:
        try:
            return await self.sleeper.nap(seconds)
        except TaskFailedError as e:
            return f"failed: {type(e.cause).__name__}"


@pytest.fixture
async def client(make_worker: WorkerFactory) -> AsyncIterator[InfiniticClient]:
    worker = make_worker()
    worker.add_workflow(Waits)
    worker.add_workflow(WaitsEverywhere)
    async with running(worker) as c:
        yield c


async def test_a_workflow_method_timeout_bounds_the_clients_call(
    client: InfiniticClient, storage: InMemoryStorage
) -> None:
    started = time.monotonic()
    with pytest.raises(WorkflowTimedOutError) as raised:
        await client.new_workflow(Waits).until_told()
    assert 0.25 <= time.monotonic() - started < 5
    error = raised.value
    assert error.workflow_name == "Waits"
    assert error.method_name == "until_told"
    # The workflow runs on, and completes once told.
    assert await storage.key_value.get(state_key("Waits", error.workflow_id)) is not None
    running = client.get_workflow_by_id(Waits, error.workflow_id)
    await running.go.send("now")  # type: ignore[attr-defined]
    for _ in range(500):
        if await storage.key_value.get(state_key("Waits", error.workflow_id)) is None:
            break
        await asyncio.sleep(0.01)
    assert await storage.key_value.get(state_key("Waits", error.workflow_id)) is None
    assert await client.new_workflow(Waits).no_timeout() == "quick"


async def test_a_timeout_on_the_class_applies_to_each_method_without_its_own(
    client: InfiniticClient,
) -> None:
    with pytest.raises(WorkflowTimedOutError):
        await client.new_workflow(WaitsEverywhere).until_told()
    deferred = await client.dispatch(client.new_workflow(WaitsEverywhere).longer)
    stub = client.get_workflow_by_id(WaitsEverywhere, deferred.id)
    await stub.go.send("soon")  # type: ignore[attr-defined]
    assert await deferred == "soon"  # within its own 5 s, not the class's 0.3 s


async def test_the_worker_configuration_wins_over_the_implementation(
    make_worker: WorkerFactory,
) -> None:
    impl = SleeperImpl()
    worker = make_worker()
    # Configured: 0.1 s and no retry, over the declared 5 s and three retries.
    worker.add_service(impl, interface=Sleeper, name="Sleeper", timeout=0.1, retry=NoRetry())
    worker.add_workflow(Naps)
    async with running(worker) as client:
        assert await client.new_workflow(Naps).nap(0.5) == "failed: RemoteError"
        assert impl.calls["nap"] == 1
        assert await client.new_workflow(Naps).nap(0) == "rested"


async def test_the_implementation_wins_over_nothing(make_worker: WorkerFactory) -> None:
    impl = SleeperImpl()
    worker = make_worker()
    worker.add_service(impl, interface=Sleeper, name="Sleeper")
    worker.add_workflow(Naps)
    async with running(worker) as client:
        assert await client.new_workflow(Naps).nap(0.2) == "rested"  # under the declared 5 s
        assert impl.calls["nap"] == 1


class Upstream(Protocol):
    async def call(self, seconds: float) -> str: ...

    def call_sync(self, seconds: float) -> str: ...


class UpstreamImpl:
    """Raises its own TimeoutError (an upstream call that gave up), or sleeps."""

    @timeout(seconds=0.2)
    async def call(self, seconds: float) -> str:
        if seconds < 0:
            raise TimeoutError("upstream gave up")
        await asyncio.sleep(seconds)
        return "answered"

    @timeout(seconds=0.2)
    def call_sync(self, seconds: float) -> str:
        if seconds < 0:
            raise TimeoutError("upstream gave up")
        time.sleep(seconds)
        return "answered"


class CallsUpstream(Workflow):
    upstream = new_service(Upstream)

    async def call(self, seconds: float, sync: bool) -> str:
        try:
            if sync:
                return await self.upstream.call_sync(seconds)
            return await self.upstream.call(seconds)
        except TaskFailedError as e:
            cause = e.cause
            assert isinstance(cause, RemoteError)
            return f"{cause.class_name}: {cause.message}"


@pytest.mark.parametrize("sync", [False, True])
async def test_a_timeout_error_of_the_code_is_not_the_execution_timeout(
    make_worker: WorkerFactory, sync: bool
) -> None:
    worker = make_worker()
    worker.add_service(UpstreamImpl(), interface=Upstream, retry=NoRetry())
    worker.add_workflow(CallsUpstream)
    async with running(worker) as client:
        assert await client.new_workflow(CallsUpstream).call(0, sync) == "answered"
        own = await client.new_workflow(CallsUpstream).call(-1, sync)
        assert own == "TimeoutError: upstream gave up"
        late = await client.new_workflow(CallsUpstream).call(0.6, sync)
        assert late.startswith("infinitic.task_executor.TaskTimeoutError: task Upstream.call")
        assert late.endswith("exceeded its execution timeout of 0.2s")
