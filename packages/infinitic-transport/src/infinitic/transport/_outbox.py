"""Sending Infinitic messages: encode, then publish; several at once, all acknowledged.

With tracing on (:mod:`infinitic.common.tracing`), every message carries the current trace
context in its properties."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from infinitic.common import encode_message, tracing
from infinitic.common.messages import Message
from infinitic.exceptions import MessageTooLargeError
from infinitic.transport._interfaces import Transport


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish on a topic (``data``: its encoding, when already made)."""

    topic: str
    message: Message
    key: str | None = None
    deliver_at: float | None = None
    data: bytes | None = None


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
        """Publish every message; returns once the broker accepted them all.

        Raises:
            MessageTooLargeError: a message is over the transport's limit; then none is sent.
        """
        if len(self.items) == 1:  # the common case: no tasks to create
            await send(transport, self.items[0])
        elif self.items:
            encoded = [encode_checked(transport, o) for o in self.items]
            traced = tracing.headers()
            await asyncio.gather(
                *(
                    transport.publish(
                        o.topic, data, key=o.key, deliver_at=o.deliver_at, properties=traced
                    )
                    for o, data in zip(self.items, encoded, strict=True)
                )
            )
        self.items.clear()


async def send(transport: Transport, outgoing: Outgoing) -> None:
    """Encode and publish one message.

    Raises:
        MessageTooLargeError: the message is over the transport's limit (nothing is sent).
    """
    await transport.publish(
        outgoing.topic,
        encode_checked(transport, outgoing),
        key=outgoing.key,
        deliver_at=outgoing.deliver_at,
        properties=tracing.headers(),
    )


def encode_checked(transport: Transport, outgoing: Outgoing) -> bytes:
    """Encode a message, refusing it if it is over the transport's limit."""
    data = outgoing.data
    if data is None:
        data = encode_message(outgoing.message)
    limit = transport.max_message_bytes
    if limit is not None and len(data) > limit:
        raise MessageTooLargeError(describe(outgoing.message), outgoing.topic, len(data), limit)
    return data


def describe(message: Message) -> str:
    """Name a message by what it carries, for errors: its kind, the service or workflow, the
    method and the id."""
    entity = getattr(message, "service_name", None) or getattr(message, "workflow_name", None)
    method = getattr(message, "method_name", None)
    what = f"{entity}.{method}" if entity and method else entity or ""
    ident = getattr(message, "task_id", None) or getattr(message, "workflow_id", None)
    text = f"message {message.TYPE}"
    if what:
        text += f" for {what}"
    if ident:
        text += f" (id {ident})"
    return text
