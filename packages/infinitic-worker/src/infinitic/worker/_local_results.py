"""Results handed straight to this worker's own state engines (``local_results``).

A service executor sends a task's result to the ``workflow-engine`` topic of the workflow that
asked for it, and the state engine consuming that topic applies it. When that state engine
runs in the same worker, the broker's round trip (a publish, a persist, a delivery: about a
millisecond per task on pulsar-lite, more on a remote Apache Pulsar) is all that separates
them. So the transport a worker gives its service executors hands such a message to its own
state engine instead, and the executor awaits the engine's cycle as it would await the broker's
receipt: once it returns, the result is in the stored state (or the engine found it applied
already), and the executor acknowledges its task. A result that the engine cannot take now (it
came before the state expecting it, or the handling failed) is published as usual, and the
broker delivers it to whichever engine: nothing depends on the local attempt.

A task stays unacknowledged while the engine's cycle runs (a millisecond or two, against the
broker's receipt before), so a worker that dies meanwhile has a few more tasks run again. A cycle
that takes longer than ``LOCAL_SECONDS`` (the storage is down, say: the cycle retries) is
cancelled, as a worker's crash would cut it, and the result published: the executor goes on
with its tasks whatever the state engine's storage does.

Why nothing is lost: the task's own message is acknowledged only after the cycle returns (send
before acknowledge, as with the broker); a worker that dies before that leaves the task
unacknowledged, the broker delivers it again, the task runs again and its result comes again
(a duplicate of one applied already is dropped by the engine, as after any redelivery).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from infinitic.transport import (
    Consumer,
    ConsumerSettings,
    MessageHandler,
    RetryLater,
    Transport,
    TransportMessage,
)

logger = logging.getLogger("infinitic.worker")

#: The ``message_id`` of a message handed over here (a broker's id names a stored message).
LOCAL_MESSAGE_ID = "local"
#: How long a handling here may take before the message is published instead.
LOCAL_SECONDS = 1.0


class LocalResults(Transport):
    """A transport that hands what is published on a routed topic to that topic's handler in
    this process, and publishes through ``inner`` what is not routed or what the handler does
    not take (see the module's documentation).

    Args:
        inner: the worker's transport.
        seconds: how long a handling here may take (then it is cancelled and the message
            published).
    """

    def __init__(self, inner: Transport, seconds: float = LOCAL_SECONDS) -> None:
        self._inner = inner
        self._seconds = seconds
        self.max_message_bytes = inner.max_message_bytes
        self._routes: dict[str, MessageHandler] = {}
        self._stopped = False
        self.handled = 0  # messages handled here (never published)
        self.published = 0  # routed messages published after all (early, or failed here)

    def route(self, topic: str, handler: MessageHandler) -> None:
        """Hand what is published on ``topic`` to ``handler``."""
        self._routes[topic] = handler

    def stop(self) -> None:
        """Hand nothing more (the worker is closing): everything goes to the broker."""
        self._stopped = True

    async def publish(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None = None,
        deliver_at: float | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        handler = self._routes.get(topic)
        if handler is not None and deliver_at is None and not self._stopped:
            message = TransportMessage(
                topic=topic,
                data=data,
                key=key,
                message_id=LOCAL_MESSAGE_ID,
                properties=dict(properties) if properties else {},
            )
            try:
                async with asyncio.timeout(self._seconds):
                    await handler(message)
            except RetryLater:
                pass  # came before its state here: the broker delivers it again later
            except Exception as e:
                logger.debug(
                    "a message of %s not handled in this worker, published: %s: %s",
                    topic,
                    type(e).__name__,
                    e,
                )
            else:
                self.handled += 1
                return
            self.published += 1
        await self._inner.publish(
            topic, data, key=key, deliver_at=deliver_at, properties=properties
        )

    # -- what else a Transport is: the inner one's (a service executor only publishes) ----------

    async def subscribe(
        self,
        topic: str,
        subscription: str,
        handler: MessageHandler,
        settings: ConsumerSettings | None = None,
    ) -> Consumer:
        return await self._inner.subscribe(topic, subscription, handler, settings)

    async def close(self) -> None:
        """Hand nothing more; the inner transport is its owner's to close."""
        self.stop()

    def now(self) -> float:
        return self._inner.now()
