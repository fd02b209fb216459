"""A test kit for users: a worker and a client in one process, on a manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Self, TypeVar

from infinitic.client import InfiniticClient
from infinitic.common import entity_name, read_workflow_state
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport, ManualClock
from infinitic.worker._worker import InfiniticWorker

T = TypeVar("T")


class InfiniticTestKit:
    """Runs services and workflows with a client, in memory, on a clock that only moves when the
    test says so: a workflow sleeping for a day completes at once with
    :meth:`skip_to_next_timer` or :meth:`run`.

    Example::

        async with InfiniticTestKit() as kit:
            kit.add_service(Bank(), interface=BankService)
            kit.add_workflow(ReminderWorkflow)
            result = await kit.run(kit.client.new_workflow(ReminderWorkflow).remind("bob"))

    Services and workflows can be added until the first use of the client.

    Workflow code runs under the strict check (``strict_check``): a call that is not
    deterministic (``time.time()``, ``datetime.now()``, ``random``, ``uuid4()``, ``time.sleep``,
    I/O) fails the workflow task at the call with
    :class:`~infinitic.exceptions.NonDeterministicCallError`, naming the line and what to use
    instead, where a worker would only fail at a replay, after a restart.
    """

    def __init__(
        self,
        *,
        workflow_cache_size: int = 1000,
        check_mode: str = "simple",
        start: float | None = None,
        strict_check: bool = True,
    ) -> None:
        self.clock = ManualClock(start)
        self.transport = InMemoryTransport(clock=self.clock)
        self.storage = InMemoryStorage()
        self.worker = InfiniticWorker(
            transport=self.transport,
            storage=self.storage,
            workflow_cache_size=workflow_cache_size,
            check_mode=check_mode,
            redelivery_delay=0.0,
            strict_check=strict_check,
        )
        self.client = _LazyStartClient(self)
        self._entered = False

    def add_service(self, implementation: object, **options: Any) -> Self:
        """Register a service implementation (see InfiniticWorker.add_service)."""
        self.worker.add_service(implementation, **options)
        return self

    def add_workflow(self, workflow: type, **options: Any) -> Self:
        """Register a workflow class (see InfiniticWorker.add_workflow)."""
        self.worker.add_workflow(workflow, **options)
        return self

    async def __aenter__(self) -> Self:
        self._entered = True
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await InfiniticClient.close(self.client)
        await self.worker.close()
        await self.transport.close()

    async def _ensure_started(self) -> None:
        await self.worker.start()

    async def idle(self, within: float = 10.0) -> None:
        """Wait until no message is waiting or being processed (delayed ones aside)."""
        async with asyncio.timeout(within):
            quiet = 0
            while quiet < 3:  # idle several times in a row: nothing is about to publish
                await asyncio.sleep(0)
                quiet = quiet + 1 if self.transport.idle() else 0

    async def skip(self, seconds: float) -> None:
        """Let everything settle, move the clock forward, let the due messages be processed."""
        await self.idle()
        self.clock.advance(seconds)
        await self.idle()

    async def skip_to_next_timer(self) -> float | None:
        """Let everything settle, then jump to the next due timer or retry; returns its instant
        (None when nothing is scheduled)."""
        await self.idle()
        due = self.transport.next_due()
        if due is not None:
            self.clock.set(max(due, self.clock.now()))
            await self.idle()
        return due

    async def run(self, awaitable: Awaitable[T], *, max_skips: int = 10_000) -> T:
        """Await ``awaitable``, jumping over timers while it waits for them."""
        await self._ensure_started()
        task = asyncio.ensure_future(awaitable)
        for _ in range(max_skips):
            await asyncio.wait({task}, timeout=0)
            if task.done():
                return task.result()
            await self.idle()
            if task.done():
                return task.result()
            if self.transport.next_due() is None:
                await asyncio.wait({task}, timeout=0.01)  # waiting for something else
            else:
                await self.skip_to_next_timer()
        task.cancel()
        raise TimeoutError(f"still waiting after {max_skips} clock jumps")

    async def history(self, workflow: type, workflow_id: str) -> dict[str, Any] | None:
        """The stored state of an instance (its history), or None once it has completed."""
        return await read_workflow_state(self.storage.key_value, entity_name(workflow), workflow_id)


class _LazyStartClient(InfiniticClient):
    """The kit's client: starts the kit's worker before its first use."""

    def __init__(self, kit: InfiniticTestKit) -> None:
        super().__init__(transport=kit.transport, name=None)
        self._kit = kit

    async def start(self) -> None:
        await self._kit._ensure_started()
        await super().start()
