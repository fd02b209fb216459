"""Worker lifecycle: embedding, graceful shutdown, run() and registration errors."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Protocol

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import ConfigurationError
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker
from infinitic.workflows import Workflow, new_service


class Slow(Protocol):
    async def work(self, seconds: float) -> str: ...


class SlowImpl:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.finished: list[float] = []

    async def work(self, seconds: float) -> str:
        self.started.set()
        await asyncio.sleep(seconds)
        self.finished.append(seconds)
        return "done"


class SlowWorkflow(Workflow):
    slow = new_service(Slow)

    async def run(self, seconds: float) -> str:
        return await self.slow.work(seconds)


async def test_close_finishes_in_flight_work_then_another_worker_resumes() -> None:
    transport, storage = InMemoryTransport(), InMemoryStorage()
    impl = SlowImpl()
    first = InfiniticWorker(transport=transport, storage=storage)
    first.add_service(impl, interface=Slow)
    first.add_workflow(SlowWorkflow)
    await first.start()
    await first.start()  # idempotent
    async with InfiniticClient(transport=transport) as client:
        deferred = await client.dispatch(client.new_workflow(SlowWorkflow).run, 0.3)
        await asyncio.wait_for(impl.started.wait(), 5)
        await first.close()  # waits for the running task
        await first.close()  # idempotent
        assert impl.finished == [0.3]
        second = InfiniticWorker(transport=transport, storage=storage)
        second.add_service(impl, interface=Slow)
        second.add_workflow(SlowWorkflow)
        async with second:
            assert await asyncio.wait_for(deferred.result(), 5) == "done"
    assert impl.finished == [0.3]  # the task ran once


def test_registration_errors() -> None:
    worker = InfiniticWorker(transport=InMemoryTransport(), storage=InMemoryStorage())
    with pytest.raises(ConfigurationError, match="expects an instance"):
        worker.add_service(SlowImpl, interface=Slow)

    class Partial:
        pass

    with pytest.raises(ConfigurationError, match="does not implement work"):
        worker.add_service(Partial(), interface=Slow)
    with pytest.raises(ConfigurationError, match="Workflow subclass"):
        worker.add_workflow(SlowImpl)
    worker.add_service(SlowImpl(), interface=Slow)
    with pytest.raises(ConfigurationError, match="already registered"):
        worker.add_service(SlowImpl(), interface=Slow)


async def test_start_needs_something_to_run() -> None:
    worker = InfiniticWorker(transport=InMemoryTransport(), storage=InMemoryStorage())
    with pytest.raises(ConfigurationError, match="register at least one"):
        await worker.start()


def test_run_blocks_until_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        from infinitic.storage import InMemoryStorage
        from infinitic.transport import InMemoryTransport
        from infinitic.worker import InfiniticWorker
        from infinitic_examples.bank_wire.services import BankService, InMemoryBank

        worker = InfiniticWorker(transport=InMemoryTransport(), storage=InMemoryStorage())
        worker.add_service(InMemoryBank(), interface=BankService)
        print("ready", flush=True)
        worker.run()
        print("stopped", flush=True)
    """)
    )
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    import time

    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    assert out.strip() == "stopped"
