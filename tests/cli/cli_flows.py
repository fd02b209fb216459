"""Services and workflows the command-line tests run (imported by dotted path ``cli_flows``)."""

from __future__ import annotations

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
