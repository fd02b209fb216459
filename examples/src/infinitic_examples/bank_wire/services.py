"""The bank wire example's services: contracts and in-memory implementations."""

from __future__ import annotations

import asyncio
from typing import Protocol

from infinitic.services import ExponentialBackoff, retry, task_context


class BankService(Protocol):
    """Moves money between accounts."""

    async def withdraw(self, wire_id: str, account: str, amount: int) -> None: ...

    async def deposit(self, wire_id: str, account: str, amount: int) -> None: ...


class EmailService(Protocol):
    """Tells people what happened."""

    async def send(self, wire_id: str, to: str, text: str) -> str: ...


@retry(ExponentialBackoff(minimum_seconds=0.05, maximum_seconds=1, maximum_retries=5))
class InMemoryBank:
    """A bank keeping balances in memory; idempotent per wire id (tasks may run twice)."""

    def __init__(self, balances: dict[str, int] | None = None) -> None:
        self.balances: dict[str, int] = dict(balances or {})
        self._done: set[tuple[str, str]] = set()

    async def withdraw(self, wire_id: str, account: str, amount: int) -> None:
        if (wire_id, "withdraw") in self._done:
            return
        self._done.add((wire_id, "withdraw"))  # claimed before awaiting: a duplicate sees it
        await asyncio.sleep(0.001)  # stands for a call to the bank's API
        self.balances[account] = self.balances.get(account, 0) - amount

    async def deposit(self, wire_id: str, account: str, amount: int) -> None:
        if (wire_id, "deposit") in self._done:
            return
        self._done.add((wire_id, "deposit"))  # claimed before awaiting: a duplicate sees it
        await asyncio.sleep(0.001)
        self.balances[account] = self.balances.get(account, 0) + amount


class PrintingEmails:
    """An email service that only records what it would send (a sync implementation: it runs
    in the worker's thread pool)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, wire_id: str, to: str, text: str) -> str:
        self.sent.append((to, text))
        return f"email-{wire_id}-{task_context().retry_index}"
