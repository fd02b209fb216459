"""Services and workflows the command-line tests run (imported by dotted path ``cli_flows``)."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Protocol

from infinitic.workflows import Workflow, new_service, timer


class Greeter(Protocol):
    async def greet(self, name: str) -> str: ...


class GreeterImpl:
    async def greet(self, name: str) -> str:
        return f"hello {name}"


class HelloWorkflow(Workflow):
    greeter = new_service(Greeter)

    async def hello(self, name: str) -> str:
        return await self.greeter.greet(name)

    async def sleepy(self, seconds: float) -> str:
        await timer(timedelta(seconds=seconds))
        return "woke"

    async def fail(self) -> str:
        raise ValueError("as asked")


class NotAWorkflow:
    async def hello(self, name: str) -> str:
        return name


class Sleeper(Protocol):
    async def sleep(self, seconds: float) -> str: ...


class SleeperImpl:
    """Sleeps ``CLI_TEST_SLEEP`` seconds when set (else as asked), appending a line to the file
    ``CLI_TEST_MARKER`` (when set) as it starts."""

    async def sleep(self, seconds: float) -> str:
        marker = os.environ.get("CLI_TEST_MARKER")
        if marker:
            await asyncio.to_thread(_append, marker, "started\n")
        await asyncio.sleep(float(os.environ.get("CLI_TEST_SLEEP", seconds)))
        return "slept"


def _append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line)


class SleepWorkflow(Workflow):
    sleeper = new_service(Sleeper)

    async def run(self, seconds: float) -> str:
        return await self.sleeper.sleep(seconds)
