"""Workflow tasks are bounded and isolated (issue 12, item 9): a timeout and a retry policy as
in Infinitic, the worker responsive while workflow code runs, blocking steps and
non-deterministic calls reported where they are. Public API only, cache on and off."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import WorkflowFailedError
from infinitic.worker import InfiniticWorker
from infinitic.worker.testing import InfiniticTestKit

from .conftest import WorkerFactory, running
from .workflow_tasks import (
    ATTEMPTS,
    FAILING,
    QUICK_RETRY,
    Dice,
    Flaky,
    Sleeper,
    Spinner,
    Undeclared,
    line_of,
)

ISOLATIONS = ["loop", "thread", "auto"]


@pytest.fixture(autouse=True)
def _reset() -> None:
    ATTEMPTS.clear()
    FAILING["attempts"] = 1


@pytest.mark.parametrize("isolation", ISOLATIONS)
async def test_a_workflow_task_past_its_timeout_fails_its_method(
    make_worker: WorkerFactory, isolation: str
) -> None:
    FAILING["attempts"] = 1000
    worker = make_worker(workflow_task_isolation=isolation)
    worker.add_workflow(Spinner, task_timeout=0.3)
    async with running(worker) as client:
        deferred = await client.dispatch(client.new_workflow(Spinner).run)
        with pytest.raises(WorkflowFailedError) as info:
            await asyncio.wait_for(deferred, 20)
        message = str(info.value)
        assert "workflow task of Spinner" in message
        assert "method run, ran past its timeout of 0.3 s" in message
        line = line_of(Spinner.run, "spins here")  # the loop's line, or its body's
        assert any(f"workflow_tasks.py:{n} in run" in message for n in (line, line + 1))
        assert ATTEMPTS[deferred.id] == 1  # no retry policy: no retry (as in Infinitic)
        # the worker still serves other workflows
        FAILING["attempts"] = 0
        assert await asyncio.wait_for(client.new_workflow(Spinner).run(), 20) == (
            "done after 1 attempts"
        )


@pytest.mark.parametrize("isolation", ["loop", "thread"])
async def test_a_timed_out_workflow_task_is_retried_by_the_policy(
    make_worker: WorkerFactory, isolation: str
) -> None:
    worker = make_worker(workflow_task_isolation=isolation)
    worker.add_workflow(Spinner, task_timeout=0.3, task_retry=QUICK_RETRY)
    async with running(worker) as client:
        result = await asyncio.wait_for(client.new_workflow(Spinner).run(), 20)
    assert result == "done after 2 attempts"


async def test_the_retry_declared_on_the_workflow_applies(make_worker: WorkerFactory) -> None:
    worker = make_worker()
    worker.add_workflow(Flaky)
    async with running(worker) as client:
        assert await asyncio.wait_for(client.new_workflow(Flaky).run(), 20) == (
            "done after 2 attempts"
        )
        FAILING["attempts"] = 1000  # more failures than the policy's 2 retries
        deferred = await client.dispatch(client.new_workflow(Flaky).run)
        with pytest.raises(WorkflowFailedError, match="flaky attempt 3"):
            await asyncio.wait_for(deferred, 20)
        assert ATTEMPTS[deferred.id] == 3


async def test_without_retry_policy_a_failure_stands_and_the_configured_one_wins(
    make_worker: WorkerFactory,
) -> None:
    worker = make_worker()
    worker.add_workflow(Undeclared)
    async with running(worker) as client:
        deferred = await client.dispatch(client.new_workflow(Undeclared).run)
        with pytest.raises(WorkflowFailedError, match="flaky attempt 1"):
            await asyncio.wait_for(deferred, 20)
        assert ATTEMPTS[deferred.id] == 1
    configured = make_worker()
    configured.add_workflow(Undeclared, task_retry=QUICK_RETRY)
    async with running(configured) as client:
        assert await asyncio.wait_for(client.new_workflow(Undeclared).run(), 20) == (
            "done after 2 attempts"
        )


async def _max_gap_while(client: InfiniticClient, seconds: float, cpu: bool) -> float:
    """The longest the event loop went without running a ticker while a Sleeper ran."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        assert await asyncio.wait_for(client.new_workflow(Sleeper).run(seconds, cpu), 20) == (
            "woke"
        )
    finally:
        stop.set()
        await ticker
    return max(gaps)


@pytest.mark.parametrize("cpu", [True, False], ids=["cpu", "sleep"])
async def test_the_worker_stays_responsive_while_workflow_code_blocks(
    make_worker: WorkerFactory, cpu: bool
) -> None:
    worker = make_worker(workflow_task_isolation="thread")
    worker.add_workflow(Sleeper)
    # A loop frozen by the step goes without a tick for the whole step (1 s); a loop that
    # runs beside it ticks every few milliseconds, and on a machine loaded several times over
    # its cores still well within the step (0.63 s was the worst seen at a load of 8 on 2).
    async with running(worker) as client:
        assert await _max_gap_while(client, 1.0, cpu) < 0.85
    blocking = make_worker(workflow_task_isolation="loop")  # what it was: the loop froze
    blocking.add_workflow(Sleeper)
    async with running(blocking) as client:
        assert await _max_gap_while(client, 1.0, cpu) >= 0.95


async def test_auto_moves_a_blocking_workflow_to_threads(
    make_worker: WorkerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker()  # isolation "auto" by default
    worker.add_workflow(Sleeper)
    async with running(worker) as client:
        with caplog.at_level(logging.WARNING, logger="infinitic.workflow_engine"):
            assert await _max_gap_while(client, 0.5, True) >= 0.4  # the first one blocks
        assert "its workflow tasks run on threads from now on" in caplog.text
        assert await _max_gap_while(client, 1.0, True) < 0.85  # the next ones do not


@pytest.mark.parametrize("isolation", ["loop", "thread"])
@pytest.mark.parametrize("cpu", [True, False], ids=["cpu", "sleep"])
async def test_a_blocking_step_is_reported_with_its_line(
    make_worker: WorkerFactory, caplog: pytest.LogCaptureFixture, isolation: str, cpu: bool
) -> None:
    worker = make_worker(workflow_task_isolation=isolation, blocking_warning_seconds=0.1)
    worker.add_workflow(Sleeper)
    with caplog.at_level(logging.WARNING, logger="infinitic.workflow_engine"):
        async with running(worker) as client:
            await asyncio.wait_for(client.new_workflow(Sleeper).run(0.4, cpu), 20)
    line = line_of(Sleeper.run, "burns CPU here" if cpu else "sleeps here")
    lines = [r.getMessage() for r in caplog.records if "without yielding" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert "workflow Sleeper" in lines[0]
    assert "method run" in lines[0]
    assert any(f"workflow_tasks.py:{n} in run" in lines[0] for n in (line, line + 1))


@pytest.mark.parametrize(
    ("how", "call", "use"),
    [
        ("random", "random.random()", "self.random()"),
        ("time", "time.time()", "self.now()"),
        ("open", "open()", "service task"),
    ],
)
async def test_strict_mode_reports_a_non_deterministic_call_at_the_call(
    make_worker: WorkerFactory, how: str, call: str, use: str
) -> None:
    lenient = make_worker()  # passes while cached, fails after a restart: nothing is said
    lenient.add_workflow(Dice)
    async with running(lenient) as client:
        await asyncio.wait_for(client.new_workflow(Dice).run(how), 20)
    strict = make_worker(check_mode="strict")
    strict.add_workflow(Dice)
    async with running(strict) as client:
        deferred = await client.dispatch(client.new_workflow(Dice).run, how)
        with pytest.raises(WorkflowFailedError) as info:
            await asyncio.wait_for(deferred, 20)
    message = str(info.value)
    assert f"{call} in workflow Dice, method run, at " in message
    assert "workflow_tasks.py:" in message
    assert use in message


@pytest.mark.parametrize("how", ["inline", "helpers"])
async def test_strict_mode_accepts_the_deterministic_ways(
    make_worker: WorkerFactory, how: str
) -> None:
    worker = make_worker(strict_check=True)
    worker.add_workflow(Dice)
    async with running(worker) as client:
        value = await asyncio.wait_for(client.new_workflow(Dice).run(how), 20)
    assert 0 <= value < 1


async def test_the_test_kit_reports_a_non_deterministic_call() -> None:
    async with InfiniticTestKit() as kit:
        kit.add_workflow(Dice)
        with pytest.raises(WorkflowFailedError, match=r"random\.random\(\) in workflow Dice"):
            await kit.run(kit.client.new_workflow(Dice).run("random"))
        assert 0 <= await kit.run(kit.client.new_workflow(Dice).run("helpers")) < 1


def test_bad_options_are_refused_by_name() -> None:
    from infinitic.exceptions import ConfigurationError
    from infinitic.storage import InMemoryStorage
    from infinitic.transport import InMemoryTransport

    options = {"transport": InMemoryTransport(), "storage": InMemoryStorage()}
    with pytest.raises(ConfigurationError, match="workflow_task_isolation must be one of"):
        InfiniticWorker(**options, workflow_task_isolation="fiber")  # type: ignore[arg-type]
    worker = InfiniticWorker(**options)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="task_timeout must be a number of seconds"):
        worker.add_workflow(Spinner, task_timeout=0)
    with pytest.raises(ConfigurationError, match="task_retry must be a RetryPolicy"):
        worker.add_workflow(Spinner, task_retry=3)  # type: ignore[arg-type]
