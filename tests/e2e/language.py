"""Workflows exercising the workflow language, for the end-to-end tests."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pydantic import BaseModel

from infinitic.exceptions import (
    TaskFailedError,
    TaskTimedOutError,
    WorkflowFailedError,
    WorkflowTimedOutError,
)
from infinitic.services import name, timeout
from infinitic.workflows import (
    Channel,
    Deferred,
    Workflow,
    all_of,
    any_of,
    dispatch,
    get_workflow_by_id,
    get_workflow_by_tag,
    inline,
    new_service,
    new_workflow,
    patched,
    timer,
)


class Tools(Protocol):
    async def add(self, a: int, b: int) -> int: ...

    async def sleep(self, seconds: float) -> str: ...

    async def fail(self, message: str) -> None: ...

    @timeout(seconds=0.2)
    async def slow_with_timeout(self, seconds: float) -> str: ...

    async def fail_unless_fixed(self, message: str) -> None: ...


class ToolsImpl:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.finished: list[str] = []

    async def add(self, a: int, b: int) -> int:
        self.calls["add"] += 1
        return a + b

    async def sleep(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"slept {seconds}"

    async def fail(self, message: str) -> None:
        self.calls["fail"] += 1
        raise RuntimeError(message)

    async def fail_unless_fixed(self, message: str) -> None:
        self.calls["fail_unless_fixed"] += 1
        if not FLAGS["task_fixed"]:
            raise RuntimeError(message)

    async def slow_with_timeout(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        self.finished.append(f"slow {seconds}")
        return "done"


class Factorial(Workflow):
    child: Factorial

    async def compute(self, n: int) -> int:
        if n <= 1:
            return 1
        return n * await self.child.compute(n - 1)


Factorial.child = new_workflow(Factorial)  # a workflow can start children of its own class


class Parallel(Workflow):
    tools = new_service(Tools)

    async def many(self, n: int) -> list[int]:
        deferreds = [dispatch(self.tools.add, i, i) for i in range(n)]
        return await all_of(deferreds)

    async def nested(self) -> list[object]:
        a = [self.tools.add(1, 1), self.tools.add(2, 2)]
        b = [self.tools.add(3, 3), [self.tools.add(4, 4)]]
        first = await any_of(self.tools.sleep(5), self.tools.add(10, 10))
        return [await all_of(a, b), first]

    async def statuses(self) -> list[str]:
        ok: Deferred[int] = dispatch(self.tools.add, 1, 2)
        bad: Deferred[None] = dispatch(self.tools.fail, "no")
        slow: Deferred[str] = dispatch(self.tools.sleep, 5)
        seen = [ok.status, bad.status, slow.status]
        await ok
        try:
            await bad
        except TaskFailedError:
            pass
        seen += [ok.status, bad.status, slow.status]
        return seen

    async def tasks_and_gather(self) -> list[int]:
        async def double(i: int) -> int:
            return await self.tools.add(i, i)

        tasks = [asyncio.create_task(double(i)) for i in range(5)]
        return list(await asyncio.gather(*tasks))


class Timers(Workflow):
    tools = new_service(Tools)

    async def durations(self) -> list[str]:
        start = self.now()
        await asyncio.sleep(0.1)
        due = await timer(timedelta(seconds=0.1))
        until = await timer(datetime.fromtimestamp(self.now() + 0.1, tz=UTC))
        elapsed = self.now() - start
        return [type(due).__name__, str(until >= due), str(elapsed >= 0.3)]

    async def race_task(self, task_seconds: float, timer_seconds: float) -> str:
        winner = await any_of(self.tools.sleep(task_seconds), timer(timer_seconds))
        return "task" if isinstance(winner, str) else "timer"

    async def wait_for(self, task_seconds: float) -> str:
        try:
            return await asyncio.wait_for(self.tools.sleep(task_seconds), timeout=0.1)
        except TimeoutError:
            return "timed out"

    async def long_wait(self) -> str:
        await asyncio.sleep(3600)
        return "woke up"


class Approval(BaseModel):
    amount: int
    by: str


class Rejection(BaseModel):
    reason: str


class Signals(Workflow):
    approvals = Channel[Approval]()
    decisions = Channel[Approval | Rejection]()
    notes = Channel[str]()

    async def first_big_approval(self) -> Approval:
        return await self.approvals.receive(limit=1, filter="$.amount > 100")

    async def three(self) -> list[str]:
        r = self.notes.receive(limit=3)
        return [await r, await r, await r]

    async def typed(self) -> str:
        rejection = await self.decisions.receive(limit=1, type=Rejection)
        assert isinstance(rejection, Rejection)
        return rejection.reason

    async def signal_or_timeout(self, seconds: float) -> str:
        winner = await any_of(self.notes.receive(limit=1), timer(seconds))
        return winner if isinstance(winner, str) else "timeout"

    async def late_receive(self) -> str:
        await timer(0.3)  # signals sent before this receive starts are discarded
        return await self.notes.receive(limit=1)

    async def two_receives(self) -> list[str]:
        small = self.approvals.receive(limit=1, filter="$.amount <= 100")
        big = self.approvals.receive(limit=1, filter="$.amount > 100")
        s, b = await all_of(small, big)
        return [f"{s.by}:{s.amount}", f"{b.by}:{b.amount}"]


class Talker(Workflow):
    async def tell(self, target_id: str, note: str) -> str:
        other = get_workflow_by_id(Signals, target_id)
        await other.notes.send(note)
        return "sent"

    async def broadcast(self, tag: str, note: str) -> str:
        await get_workflow_by_tag(Signals, tag).notes.send(note)
        return "broadcast"

    async def ask(self, target_id: str) -> int:
        counter = get_workflow_by_id(Counter_, target_id)
        return await counter.increment(5)

    async def bump_all(self, tag: str, n: int) -> str:
        sent = await dispatch(get_workflow_by_tag(Counter_, tag).increment, n)
        assert sent is None  # completed once sent: no single result
        await self.tools_free_step()
        return "bumped"

    async def wait_for_all(self, tag: str) -> int:
        return await get_workflow_by_tag(Counter_, tag).increment(1)  # refused

    async def tools_free_step(self) -> None:
        await timer(0.01)  # a second workflow task: the dispatch is replayed, not sent again


class Counter_(Workflow):
    """An instance whose properties are shared by its method runs."""

    total = 0
    stop = Channel[str]()

    async def run(self) -> int:
        await self.stop.receive(limit=1)
        return self.total

    async def increment(self, n: int) -> int:
        self.total += n
        return self.total

    async def self_call(self) -> int:
        """Runs another method on this same instance, and waits for it."""
        me = get_workflow_by_id(Counter_, self.workflow_id)
        await me.increment(7)
        return self.total


class Context(Workflow):
    tools = new_service(Tools)

    async def describe(self) -> dict[str, object]:
        self.logger.info("describing %s", self.workflow_id)
        r1, r2, u = self.random(), self.random(), str(self.uuid4())
        await self.tools.add(1, 1)  # a second workflow task: replays must give the same values
        return {
            "id": self.workflow_id,
            "name": self.workflow_name,
            "method": self.method_name,
            "tags": sorted(self.tags),
            "meta": {k: v.decode() for k, v in self.meta.items()},
            "random": [r1, r2],
            "uuid": u,
        }

    async def deferred_reprs(self) -> list[str]:
        """What a task's Deferred says of itself before and after its outcome."""
        d = self.tools.add(2, 3)
        before = repr(d)
        await d
        return [before, repr(d)]

    async def inline_once(self) -> list[float]:
        values = []
        for _ in range(3):
            values.append(await inline(lambda: __import__("random").random()))
            await self.tools.add(1, 2)
        return values

    async def inline_with_command(self) -> None:
        await inline(lambda: self.tools.add(1, 2))


class Errors(Workflow):
    tools = new_service(Tools)
    child_errors: Errors
    slow_child: SlowChildApi

    async def catch_task_failure(self) -> list[str]:
        try:
            await self.tools.fail("broken")
        except TaskFailedError as e:
            assert e.cause is not None  # noqa: PT017
            return [e.service_name, e.method_name, type(e.cause).__name__, str(e.cause)]
        return []

    async def caller_timeout(self) -> str:
        try:
            await self.tools.slow_with_timeout(0.6)
        except TaskTimedOutError as e:
            return f"timed out {e.service_name}.{e.method_name}"
        return "no timeout"

    async def child_failure(self) -> str:
        try:
            await self.child_errors.catch_and_raise()
        except WorkflowFailedError as e:
            return f"{e.workflow_name}.{e.method_name} <- {type(e.cause).__name__}"
        return "no failure"

    async def catch_and_raise(self) -> None:
        await self.tools.fail("deep")

    async def child_timeout(self) -> str:
        try:
            await self.slow_child.long_wait()
        except WorkflowTimedOutError as e:
            return f"timed out {e.workflow_name}"
        return "no timeout"


@name("Timers")  # the contract of the Timers workflow, with a caller-side timeout
class SlowChildApi(Protocol):
    @timeout(seconds=0.2)
    async def long_wait(self) -> str: ...


Errors.child_errors = new_workflow(Errors)
Errors.slow_child = new_workflow(SlowChildApi)


class Parent(Workflow):
    child = new_workflow(Timers)

    async def wait_for_child(self) -> str:
        return await self.child.long_wait()


FLAGS = {"fixed": False, "patched": False, "task_fixed": False}


class Fixable(Workflow):
    tools = new_service(Tools)

    async def run(self) -> int:
        a = await self.tools.add(1, 1)
        if not FLAGS["fixed"]:
            raise ValueError("bug in workflow code")
        return a + await self.tools.add(2, 2)

    async def with_failing_task(self) -> str:
        await self.tools.fail_unless_fixed("until retried")
        return "resumed"

    async def with_patch(self) -> list[str]:
        out = [str(await self.tools.add(1, 1))]
        if FLAGS["patched"] and patched("extra-step"):
            out.append(str(await self.tools.add(10, 10)))
        await asyncio.sleep(0.3)
        out.append(str(await self.tools.add(2, 2)))
        return out
