"""Sending Infinitic messages: encode, then publish; several at once, all acknowledged."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from infinitic.common import encode_message
from infinitic.common.messages import Message
from infinitic.transport._interfaces import Transport


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish on a topic."""

    topic: str
    message: Message
    key: str | None = None
    deliver_at: float | None = None


@dataclass
class Outbox:
    """Messages collected while handling a message, published together before the new state is
    stored (send before save)."""

    items: list[Outgoing] = field(default_factory=list)

    def add(
        self,
        topic: str,
        message: Message,
        *,
        key: str | None = None,
        deliver_at: float | None = None,
    ) -> None:
        self.items.append(Outgoing(topic, message, key, deliver_at))

    async def send(self, transport: Transport) -> None:
        """Publish every message; returns once the broker accepted them all."""
        if len(self.items) == 1:  # the common case: no tasks to create
            await send(transport, self.items[0])
        elif self.items:
            await asyncio.gather(*(send(transport, o) for o in self.items))
        self.items.clear()


async def send(transport: Transport, outgoing: Outgoing) -> None:
    """Encode and publish one message."""
    await transport.publish(
        outgoing.topic,
        encode_message(outgoing.message),
        key=outgoing.key,
        deliver_at=outgoing.deliver_at,
    )
