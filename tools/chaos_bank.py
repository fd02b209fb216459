"""The bank wire example's services kept in Redis, for worker processes that get killed: the
side effects of the chaos tool (tools/chaos.py) and of the crash tests.

Every execution of a task that reaches Redis is counted (a counter per wire and operation), so
duplicated executions can be measured, while the money moves once per wire and operation
(idempotence), so the balances stay exact whatever runs twice.

Worker configurations build these classes with no argument: they read BANK_REDIS_URL and
BANK_PREFIX from the environment.
"""

from __future__ import annotations

import os

import redis.asyncio as aioredis

from infinitic.services import task_context

# Counts the execution, then marks the operation done and moves the money in one atomic step:
# a task run twice, or killed half-way, moves the money once.
_MOVE = """
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('INCR', KEYS[4])
if redis.call('SET', KEYS[1], '1', 'NX') then
  redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
  return 1
end
return 0
"""

#: The operations of a wire, as counted in :meth:`RedisLedger.executions`.
OPERATIONS = ("withdraw", "deposit", "send")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisLedger:
    """What the services did, under one key prefix of a Redis server.

    Keys: ``<prefix>balances`` (a hash: account to balance), ``<prefix>runs`` (a hash:
    ``<wire>:<operation>`` to how many times the task ran), ``<prefix>executions`` (their total)
    and ``<prefix>op:<wire>:<operation>`` (set once the operation moved money).
    """

    def __init__(self, url: str | None = None, prefix: str | None = None) -> None:
        self.url = url or os.environ["BANK_REDIS_URL"]
        self.prefix = prefix or os.environ["BANK_PREFIX"]
        self._client: aioredis.Redis | None = None

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(self.url)
        return self._client

    async def balances(self) -> dict[str, int]:
        raw = await self._redis().hgetall(f"{self.prefix}balances")
        return {_text(k): int(v) for k, v in raw.items()}

    async def executions(self) -> dict[tuple[str, str], int]:
        """How many times each (wire id, operation) ran."""
        raw = await self._redis().hgetall(f"{self.prefix}runs")
        runs: dict[tuple[str, str], int] = {}
        for field, count in raw.items():
            wire, _, op = _text(field).rpartition(":")
            runs[wire, op] = int(count)
        return runs

    async def total_executions(self) -> int:
        """How many task executions reached Redis so far (a sign of progress)."""
        return int(await self._redis().get(f"{self.prefix}executions") or 0)

    async def moves(self) -> set[tuple[str, str]]:
        """The (wire id, operation) pairs that moved money."""
        marker = f"{self.prefix}op:"
        found: set[tuple[str, str]] = set()
        async for key in self._redis().scan_iter(match=marker + "*", count=1000):
            wire, _, op = _text(key).removeprefix(marker).rpartition(":")
            found.add((wire, op))
        return found

    async def clear(self) -> None:
        """Delete every key under the prefix."""
        client = self._redis()
        keys = [k async for k in client.scan_iter(match=self.prefix + "*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class RedisBank(RedisLedger):
    """An implementation of ``BankService``: idempotent per wire id and operation."""

    async def _move(self, wire_id: str, op: str, account: str, delta: int) -> None:
        p = self.prefix
        keys = [f"{p}op:{wire_id}:{op}", f"{p}balances", f"{p}runs", f"{p}executions"]
        await self._redis().eval(_MOVE, 4, *keys, account, delta, f"{wire_id}:{op}")

    async def withdraw(self, wire_id: str, account: str, amount: int) -> None:
        await self._move(wire_id, "withdraw", account, -amount)

    async def deposit(self, wire_id: str, account: str, amount: int) -> None:
        await self._move(wire_id, "deposit", account, amount)


class RedisEmails(RedisLedger):
    """An implementation of ``EmailService`` that counts its sends; its receipt is the one of
    ``PrintingEmails`` (``email-<wire>-<retry index>``)."""

    async def send(self, wire_id: str, to: str, text: str) -> str:
        async with self._redis().pipeline(transaction=True) as pipe:
            pipe.hincrby(f"{self.prefix}runs", f"{wire_id}:send", 1)
            pipe.incr(f"{self.prefix}executions")
            await pipe.execute()
        return f"email-{wire_id}-{task_context().retry_index}"
