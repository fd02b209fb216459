"""The test kit (manual clock), the replayer, workflow versions and the replay-aware logger."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import WorkflowChangedError
from infinitic.services import ExponentialBackoff, retry
from infinitic.transport import InMemoryTransport
from infinitic.worker.testing import InfiniticTestKit, replay_history
from infinitic.workflows import Channel, Workflow, new_service, timer

from .conftest import WorkerFactory


class Notifier(Protocol):
    async def notify(self, text: str) -> str: ...


class NotifierImpl:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.failures = 0

    async def notify(self, text: str) -> str:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("mail server down")
        self.sent.append(text)
        return f"sent {text}"


RetryingNotifier = retry(
    ExponentialBackoff(minimum_seconds=600, maximum_seconds=600, random_factor=0, maximum_retries=2)
)(type("RetryingNotifier", (NotifierImpl,), {}))


class Reminder(Workflow):
    notifier = new_service(Notifier)

    async def remind(self, who: str, days: int) -> list[str]:
        self.logger.info("start %s", who)  # replayed at every later step, logged once
        out = []
        for day in range(days):
            await asyncio.sleep(24 * 3600)
            out.append(await self.notifier.notify(f"{who} day {day + 1}"))
        await timer(7 * 24 * 3600)
        self.logger.info("reminded %s", who)
        return out


async def test_a_week_long_workflow_runs_at_once_on_the_manual_clock(
    workflow_cache_size: int,
) -> None:
    notifier = NotifierImpl()
    async with InfiniticTestKit(workflow_cache_size=workflow_cache_size) as kit:
        kit.add_service(notifier, interface=Notifier)
        kit.add_workflow(Reminder)
        start = kit.clock.now()
        result = await kit.run(kit.client.new_workflow(Reminder).remind("bob", 3))
        assert result == ["sent bob day 1", "sent bob day 2", "sent bob day 3"]
        assert kit.clock.now() - start == pytest.approx(10 * 24 * 3600)


async def test_retries_wait_on_the_manual_clock_too() -> None:
    notifier = RetryingNotifier()
    notifier.failures = 2
    async with InfiniticTestKit() as kit:
        kit.add_service(notifier, interface=Notifier)
        kit.add_workflow(Reminder)
        start = kit.clock.now()
        assert await kit.run(kit.client.new_workflow(Reminder).remind("al", 1)) == ["sent al day 1"]
        assert kit.clock.now() - start == pytest.approx(24 * 3600 + 1200 + 7 * 24 * 3600)


async def test_skip_to_next_timer_step_by_step() -> None:
    async with InfiniticTestKit() as kit:
        kit.add_service(NotifierImpl(), interface=Notifier)
        kit.add_workflow(Reminder)
        deferred = await kit.client.dispatch(kit.client.new_workflow(Reminder).remind, "x", 1)
        history = None
        for _ in range(50):
            await kit.idle()
            history = await kit.history(Reminder, deferred.id)
            if history and history["steps"]:
                break
        assert history is not None
        first = await kit.skip_to_next_timer()
        assert first == pytest.approx(history["steps"][0]["instant"] + 24 * 3600)
        assert await kit.skip_to_next_timer() is not None  # the week
        assert await kit.skip_to_next_timer() is None
        assert await deferred == ["sent x day 1"]


class ReplayMe(Workflow):
    notifier = new_service(Notifier)

    async def run(self) -> str:
        a = await self.notifier.notify("a")
        await timer(3600)
        return a


class ReplayMeChanged(Workflow):
    notifier = new_service(Notifier)

    async def run(self) -> str:
        await timer(10)  # changed: a timer before the task
        return await self.notifier.notify("a")


async def test_replayer_runs_recorded_histories_against_changed_code() -> None:
    async with InfiniticTestKit() as kit:
        kit.add_service(NotifierImpl(), interface=Notifier)
        kit.add_workflow(ReplayMe)
        deferred = await kit.client.dispatch(kit.client.new_workflow(ReplayMe).run)
        await kit.idle()
        history = await kit.history(ReplayMe, deferred.id)
        assert history is not None
        assert replay_history(ReplayMe, history) == 2
        with pytest.raises(
            WorkflowChangedError,
            match=r"run#0 the history holds task "
            r"Notifier.notify but the code did timer",
        ):
            replay_history(ReplayMeChanged, history)


class Greeter(Workflow):
    go = Channel[str]()

    async def greet(self, name: str) -> str:
        await self.go.receive(limit=1)
        return f"v1 {name}"


class Greeter_2(Workflow):  # the suffix is the version
    go = Channel[str]()

    async def greet(self, name: str) -> str:
        await self.go.receive(limit=1)
        return f"v2 {name}"


async def test_running_instances_stay_on_their_version(
    make_worker: WorkerFactory, transport: InMemoryTransport
) -> None:
    async with InfiniticClient(transport=transport) as client:
        old_worker = make_worker()
        old_worker.add_workflow(Greeter)
        async with old_worker:
            old = await client.dispatch(client.new_workflow(Greeter).greet, "old")
            await asyncio.sleep(0.1)
        new_worker = make_worker()
        new_worker.add_workflow(Greeter)
        new_worker.add_workflow(Greeter_2)
        async with new_worker:
            new = await client.dispatch(client.new_workflow(Greeter).greet, "new")
            await asyncio.sleep(0.1)
            for d in (old, new):
                await client.get_workflow_by_id(Greeter, d.id).go.send("go")
            assert await new == "v2 new"
            assert await old == "v1 old"


async def test_logger_is_silent_during_replays(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="infinitic.workflows")
    async with InfiniticTestKit(workflow_cache_size=0) as kit:
        kit.add_service(NotifierImpl(), interface=Notifier)
        kit.add_workflow(Reminder)
        await kit.run(kit.client.new_workflow(Reminder).remind("zoe", 2))
    lines = [r for r in caplog.records if r.getMessage() == "start zoe"]
    assert len(lines) == 1
    assert len([r for r in caplog.records if r.getMessage() == "reminded zoe"]) == 1
    assert lines[0].workflow_name == "Reminder"  # type: ignore[attr-defined]
