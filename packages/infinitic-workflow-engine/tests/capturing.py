"""A transport that keeps what the engines publish, decoded, instead of delivering it."""

from __future__ import annotations

from typing import Any

from infinitic.common import decode_message
from infinitic.transport import InMemoryTransport


class CapturingTransport(InMemoryTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Any] = []

    async def publish(self, topic: str, data: bytes, **kwargs: Any) -> None:
        self.sent.append(decode_message(data))
