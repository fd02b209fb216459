"""Services and workflows of the tag, delegated-task and batched-task scenarios."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Protocol

from infinitic.client import InfiniticClient
from infinitic.exceptions import TaskFailedError
from infinitic.services import (
    ExponentialBackoff,
    TaskContext,
    batch,
    delegated,
    retry,
    task_context,
)
from infinitic.workflows import Channel, Deferred, Workflow, new_service, new_workflow

# -- workflow tags ----------------------------------------------------------------------------


class Waiter(Workflow):
    """Runs until something is sent to ``stop``."""

    stop = Channel[str]()

    async def run(self, name: str) -> str:
        word = await self.stop.receive(limit=1)
        return f"{name}:{word}:{self.workflow_id}"


class Parent(Workflow):
    async def start_child(self, tag: str) -> str:
        child = new_workflow(Waiter, tags={tag})
        return await child.run("child")


# -- task tags --------------------------------------------------------------------------------


class Slow(Protocol):
    async def work(self, n: int) -> int: ...


class SlowImpl:
    """Blocks each task until ``release`` is set; records the task contexts."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.contexts: list[TaskContext] = []

    async def work(self, n: int) -> int:
        self.contexts.append(task_context())
        await self.release.wait()
        return n * 10


class SlowWorkflow(Workflow):
    slow = new_service(Slow, tags={"slow", "batch:7"}, meta={"origin": b"test"})

    async def run(self, n: int) -> int:
        return await self.slow.work(n)


# -- delegated tasks --------------------------------------------------------------------------


class Approvals(Protocol):
    @delegated
    async def ask(self, who: str) -> int: ...

    async def plain(self, who: str) -> int: ...


class ApprovalsImpl:
    """Hands each task id over (as an external system would) and returns at once."""

    def __init__(self) -> None:
        self.task_ids: asyncio.Queue[str] = asyncio.Queue()
        self.contexts: list[TaskContext] = []
        self.client: InfiniticClient | None = None  # set: complete from inside the method
        self.fail = False

    async def ask(self, who: str) -> int:
        ctx = task_context()
        self.contexts.append(ctx)
        if self.fail:
            raise PermissionError(f"{who} may not ask")
        if self.client is not None:
            await self.client.complete_delegated_task("Approvals", ctx.task_id, len(who))
        await self.task_ids.put(ctx.task_id)
        return 0  # ignored: the result comes from complete_delegated_task

    @delegated  # declared on the implementation only
    def plain(self, who: str) -> int:
        self.task_ids.put_nowait(task_context().task_id)
        return 0


class ApprovalWorkflow(Workflow):
    approvals = new_service(Approvals, tags={"approval"})

    async def ask(self, who: str) -> int:
        return await self.approvals.ask(who) + 1

    async def plain(self, who: str) -> int:
        return await self.approvals.plain(who)


# -- batched tasks ----------------------------------------------------------------------------


class Maths(Protocol):
    async def double(self, x: int) -> int: ...

    async def add(self, a: int, b: int) -> int: ...

    async def square(self, x: int) -> int: ...

    async def note(self, x: int) -> None: ...


@retry(ExponentialBackoff(minimum_seconds=0.01, maximum_seconds=0.02, maximum_retries=2))
class MathsImpl:
    """``double`` by batches of 5 (0.2s), ``add`` by batches of 3 (0.2s), ``square`` by batches of
    4 (0.1s) that forget odd numbers (once each, unless ``forget_always``)."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        self.forgotten: Counter[int] = Counter()
        self.forget_always = False
        self.noted: list[int] = []

    @batch(max_messages=5, max_seconds=0.2)
    async def double(self, tasks: dict[str, int]) -> dict[str, int]:
        self.batches.append(dict(tasks))
        return {task_id: 2 * x for task_id, x in tasks.items()}

    @batch(max_messages=3, max_seconds=0.2)
    def add(self, tasks: dict[str, tuple[int, int]]) -> dict[str, int]:  # sync: in a thread
        self.batches.append(dict(tasks))
        return {task_id: a + b for task_id, (a, b) in tasks.items()}

    @batch(max_messages=3, max_seconds=0.1)
    async def note(self, tasks: dict[str, int]) -> None:  # no result: may return nothing
        self.noted.extend(tasks.values())

    @batch(max_messages=4, max_seconds=0.1)
    async def square(self, tasks: dict[str, int]) -> dict[str, int]:
        self.batches.append(dict(tasks))
        out = {}
        for task_id, x in tasks.items():
            if x % 2 and (self.forget_always or not self.forgotten[x]):
                self.forgotten[x] += 1
                continue
            out[task_id] = x * x
        return out


class MathsWorkflow(Workflow):
    maths = new_service(Maths)
    maths_a = new_service(Maths, meta={"batchKey": b"a"})
    maths_b = new_service(Maths, meta={"batchKey": b"b"})

    async def doubles(self, xs: list[int]) -> list[int]:
        return list(await asyncio.gather(*(self.maths.double(x) for x in xs)))

    async def adds(self, pairs: list[tuple[int, int]]) -> list[int]:
        return list(await asyncio.gather(*(self.maths.add(a, b) for a, b in pairs)))

    async def keyed(self, xs: list[int]) -> list[int]:
        deferreds: list[Deferred[int]] = [
            (self.maths_a if x < 100 else self.maths_b).double(x) for x in xs
        ]
        return list(await asyncio.gather(*deferreds))

    async def notes(self, xs: list[int]) -> int:
        await asyncio.gather(*(self.maths.note(x) for x in xs))
        return len(xs)

    async def squares(self, xs: list[int]) -> list[str]:
        deferreds: list[Deferred[int]] = [self.maths.square(x) for x in xs]
        out = []
        for x, d in zip(xs, deferreds, strict=True):
            try:
                out.append(f"{x}={await d}")
            except TaskFailedError as e:
                out.append(f"{x}!{e.cause}")
        return out
