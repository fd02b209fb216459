"""A bank kept in Redis, idempotent per wire id and persistent across processes: what the
crash tests need (a task may run twice, or in a process that is then killed)."""

from __future__ import annotations

import os

import redis.asyncio as aioredis

# Marks the operation done and moves the money in one atomic step: a task run twice, or
# killed half-way, moves the money once.
_MOVE = """
if redis.call('SET', KEYS[1], '1', 'NX') then
  redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


class RedisBank:
    """Balances in the Redis hash ``<prefix>balances``; done operations in ``<prefix>op:...``.

    Built with no argument from a configuration: reads BANK_REDIS_URL and BANK_PREFIX.
    """

    def __init__(self, url: str | None = None, prefix: str | None = None) -> None:
        self.url = url or os.environ["BANK_REDIS_URL"]
        self.prefix = prefix or os.environ["BANK_PREFIX"]
        self._client: aioredis.Redis | None = None

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(self.url)
        return self._client

    async def _move(self, wire_id: str, op: str, account: str, delta: int) -> None:
        keys = [f"{self.prefix}op:{wire_id}:{op}", f"{self.prefix}balances"]
        await self._redis().eval(_MOVE, 2, *keys, account, delta)

    async def withdraw(self, wire_id: str, account: str, amount: int) -> None:
        await self._move(wire_id, "withdraw", account, -amount)

    async def deposit(self, wire_id: str, account: str, amount: int) -> None:
        await self._move(wire_id, "deposit", account, amount)

    async def balances(self) -> dict[str, int]:
        raw = await self._redis().hgetall(f"{self.prefix}balances")
        return {k.decode(): int(v) for k, v in raw.items()}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
