"""The services of the message-path benchmark's workers (tools/bench_path.py).

The benchmark measures the message path with trivial tasks (the workload of issue 11 and of the
other systems it was compared with): the bank wire example's ``InMemoryBank`` sleeps 1 ms per
call (it stands for a bank's API: 2 ms of every wire's latency) and its ``PrintingEmails`` is
synchronous (it runs in the worker's thread pool) and keeps every email. Here both services are
asynchronous and return at once; the bank keeps the example's idempotency per wire.
"""

from __future__ import annotations

from infinitic.services import task_context


class QuietBank:
    """A ``BankService`` implementation: the example's in-memory bank without its 1 ms sleep."""

    def __init__(self) -> None:
        self.balances: dict[str, int] = {}
        self._done: set[tuple[str, str]] = set()

    async def withdraw(self, wire_id: str, account: str, amount: int) -> None:
        if (wire_id, "withdraw") not in self._done:
            self._done.add((wire_id, "withdraw"))
            self.balances[account] = self.balances.get(account, 0) - amount

    async def deposit(self, wire_id: str, account: str, amount: int) -> None:
        if (wire_id, "deposit") not in self._done:
            self._done.add((wire_id, "deposit"))
            self.balances[account] = self.balances.get(account, 0) + amount


class QuietEmails:
    """An ``EmailService`` implementation that sends nothing, prints nothing, keeps nothing."""

    async def send(self, wire_id: str, to: str, text: str) -> str:
        return f"email-{wire_id}-{task_context().retry_index}"
