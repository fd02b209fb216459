"""The client core: the one owner of what every client operation shares.

It holds the transport, the client's response topic and its consumer, the outcomes being waited
for (by workflow id and method run id) and the requests waiting for a tag engine's reply (by
request id). Stubs, deferreds and tag operations reach the broker only through it.

Every future it creates has its exception retrieved when nobody awaits it (a dispatch whose
result is never awaited, then the client closed), so asyncio never reports "Future exception
was never retrieved".
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from infinitic.client._watch import DEFAULT_UNREGISTERED_WARNING, UnregisteredWatch
from infinitic.common import TopicKind, decode_message, response_topic, topic, tracing
from infinitic.common.messages import MethodOutcome, Requester, WorkflowMessage
from infinitic.common.tag_messages import (
    ClientReply,
    SendToWorkflowsByTag,
    WorkflowDispatchResolved,
)
from infinitic.exceptions import InfiniticError
from infinitic.transport import (
    Consumer,
    ConsumerSettings,
    Outbox,
    SubscriptionType,
    Transport,
    TransportMessage,
)

logger = logging.getLogger("infinitic.client")

#: A tag engine's reply, and the outcome future registered for the instance it names (if any).
Reply = tuple[ClientReply, "asyncio.Future[MethodOutcome] | None"]


class Listener(Protocol):
    """Takes the outcomes of a method run that come while nothing waits for them."""

    def take(self, outcome: MethodOutcome) -> None: ...


class ClientCore:
    """The transport, the response topic and the waits of one client.

    Args:
        transport: the transport shared with the workers.
        name: the client's unique name (its response topic's).
        request_timeout: seconds to wait for a tag engine's reply; None waits forever.
        owned_transport: closed with the client (a transport the client built).
        unregistered_warning: seconds without an answer from a workflow the client sent a
            command to before it checks that a worker runs it, and warns if none answers
            (see :mod:`infinitic.client._watch`); None: no check.
    """

    def __init__(
        self,
        transport: Transport,
        name: str,
        request_timeout: float | None,
        owned_transport: Transport | None = None,
        unregistered_warning: float | None = DEFAULT_UNREGISTERED_WARNING,
    ) -> None:
        self.transport = transport
        self.name = name
        self.request_timeout = request_timeout
        self.owned_transport = owned_transport
        physical = getattr(transport, "physical_topic", None)
        self.watch = UnregisteredWatch(
            name,
            unregistered_warning,
            self.send,
            self.requester,
            physical if callable(physical) else str,
        )
        #: How the client starts before its first send (the client's own ``start``, which a
        #: subclass may extend); :meth:`start` by default.
        self.starter: Callable[[], Awaitable[None]] = self.start
        self._outcomes: dict[tuple[str, str], asyncio.Future[MethodOutcome]] = {}
        self._replies: dict[str, asyncio.Future[Reply]] = {}
        # Deferreds whose method failed, told of a later outcome while they live.
        self._listeners: weakref.WeakValueDictionary[tuple[str, str], Listener] = (
            weakref.WeakValueDictionary()
        )
        self._consumer: Consumer | None = None
        self._started = False
        self._closed = False
        self._lock = asyncio.Lock()

    @property
    def requester(self) -> Requester:
        """This client as the requester of a command (where outcomes come back)."""
        return Requester.client(self.name)

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the response topic; idempotent."""
        if self._started:
            return
        async with self._lock:
            if self._started:
                return
            if self._closed:
                raise InfiniticError(f"client {self.name} is closed")
            await self.transport.start()
            self._consumer = await self.transport.subscribe(
                response_topic(self.name),
                "client",
                self._on_response,
                ConsumerSettings(type=SubscriptionType.EXCLUSIVE, concurrency=4),
            )
            self._started = True

    async def close(self) -> None:
        """Stop listening; what is still waited for fails with InfiniticError; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.watch.close()
        if self._consumer is not None:
            await self._consumer.close()
        if self.owned_transport is not None:
            await self.owned_transport.close()
        closed = InfiniticError(f"client {self.name} was closed")
        waits: list[asyncio.Future[Any]] = [*self._outcomes.values(), *self._replies.values()]
        for future in waits:
            if not future.done():
                future.set_exception(closed)
        self._outcomes.clear()
        self._replies.clear()

    # -- sending --------------------------------------------------------------------------

    async def send(self, to: str, message: Any, key: str | None) -> None:
        """Publish one message (started first); returns once the broker has it."""
        if not self._started:
            await self.starter()
        out = Outbox()
        out.add(to, message, key=key)
        if tracing.enabled():
            span_name = tracing.message_span_name(message)
            with tracing.producing(span_name, tracing.message_attributes(message, to)):
                await out.send(self.transport)
        else:
            await out.send(self.transport)
        name = getattr(message, "workflow_name", None)
        if isinstance(name, str) and to in (
            topic(TopicKind.WORKFLOW_CMD, name),
            topic(TopicKind.WORKFLOW_TAG, name),
        ):
            self.watch.sent(name, to)

    async def command(self, message: WorkflowMessage, *, tag: str | None = None) -> None:
        """Send a workflow command to its instance, or with ``tag`` to every instance of its
        workflow holding that tag (the tag engine reads their ids page by page; its
        ``workflow_id`` is then ignored; no instance: nothing happens)."""
        if tag is None:
            to = topic(TopicKind.WORKFLOW_CMD, message.workflow_name)
            await self.send(to, message, message.workflow_id)
            return
        to = topic(TopicKind.WORKFLOW_TAG, message.workflow_name)
        await self.send(to, SendToWorkflowsByTag.of(tag, message), tag)

    async def request(self, request_id: str, to: str, message: Any, key: str) -> Reply:
        """Send a request to a tag engine and wait for its reply (``request_timeout``).

        Raises:
            TimeoutError: no reply in time (naming the topic and the workflow).
        """
        future: asyncio.Future[Reply] = _new_future()
        self._replies[request_id] = future
        try:
            await self.send(to, message, key)
            try:
                async with asyncio.timeout(self.request_timeout):
                    return await future
            except TimeoutError:
                raise TimeoutError(
                    f"no reply to {type(message).__name__} from {to} within "
                    f"{self.request_timeout} s: is a worker of {message.workflow_name} running?"
                ) from None
        finally:
            self._replies.pop(request_id, None)

    # -- outcomes -------------------------------------------------------------------------

    def outcome(self, workflow_id: str, method_run_id: str) -> asyncio.Future[MethodOutcome]:
        """The future of a method run's next outcome (registered now if it is not yet)."""
        key = (workflow_id, method_run_id)
        future = self._outcomes.get(key)
        if future is None:
            future = self._outcomes[key] = _new_future()
        return future

    def forget(
        self,
        workflow_id: str,
        method_run_id: str,
        future: asyncio.Future[MethodOutcome] | None = None,
    ) -> None:
        """Stop waiting for a method run's outcome (only if it is ``future``, when given)."""
        key = (workflow_id, method_run_id)
        if future is None or self._outcomes.get(key) is future:
            self._outcomes.pop(key, None)

    def listen(self, workflow_id: str, method_run_id: str, listener: Listener) -> None:
        """Hand ``listener`` the outcomes of a method run that come while nothing waits for
        them (as long as it lives: it is held weakly)."""
        self._listeners[(workflow_id, method_run_id)] = listener

    async def _on_response(self, message: TransportMessage) -> None:
        decoded = decode_message(message.data)
        if isinstance(decoded, ClientReply):
            self._on_reply(decoded)
            return
        if not isinstance(decoded, MethodOutcome):
            logger.warning("client %s ignores a %s message", self.name, type(decoded).__name__)
            return
        if self.watch.heard(decoded):
            return  # the answer to a probe of the workflow's state engine
        if tracing.enabled():
            with tracing.handling(message.properties, decoded, message.topic):
                self._on_outcome(decoded)
        else:
            self._on_outcome(decoded)

    def _on_outcome(self, decoded: MethodOutcome) -> None:
        key = (decoded.workflow_id, decoded.method_run_id)
        future = self._outcomes.pop(key, None)
        if future is not None and not future.done():
            future.set_result(decoded)
            return
        listener = self._listeners.get(key)
        if listener is not None:
            listener.take(decoded)

    def _on_reply(self, reply: ClientReply) -> None:
        outcome = None
        if isinstance(reply, WorkflowDispatchResolved) and not reply.created:
            # registered now, before any outcome of that instance can be handled
            outcome = self.outcome(reply.workflow_id, reply.workflow_id)
        future = self._replies.pop(reply.request_id, None)
        if future is not None and not future.done():
            future.set_result((reply, outcome))


def _new_future() -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.add_done_callback(_retrieve)
    return future


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark an exception as seen: whoever awaits the future still gets it."""
    if not future.cancelled():
        future.exception()
