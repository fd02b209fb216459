"""The client on its own: an in-memory transport and a scripted engine that answers its commands.

No worker runs here: each test plays the workflow engine and tag engine, so it sees exactly what
the client sends and decides what comes back.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from infinitic.client import ByTagDeferred, InfiniticClient, WorkflowDeferred
from infinitic.common import FailureInfo, decode_message, encode_message, response_topic
from infinitic.common.messages import (
    DispatchWorkflow,
    Message,
    MethodOutcome,
    WaitMethod,
)
from infinitic.common.tag_messages import WorkflowDispatchResolved
from infinitic.exceptions import InfiniticError, WorkflowFailedError
from infinitic.transport import InMemoryTransport, TransportMessage
from infinitic.workflows import Workflow


class Adder(Workflow):
    async def add(self, a: int, b: int) -> int:
        return a + b


class Engine:
    """Records the commands a client sends to Adder and answers them with ``reply``."""

    def __init__(self, transport: InMemoryTransport) -> None:
        self.transport = transport
        self.received: list[Message] = []
        self.reply: Callable[[Message], list[Message]] = lambda m: []

    async def handle(self, message: TransportMessage) -> None:
        decoded = decode_message(message.data)
        self.received.append(decoded)
        for answer in self.reply(decoded):
            await self.transport.publish(
                response_topic(_client_of(decoded)), encode_message(answer)
            )

    def of(self, kind: type[Message]) -> list[Any]:
        return [m for m in self.received if isinstance(m, kind)]


def _client_of(m: Any) -> str:
    """The name of the client that sent ``m``."""
    for name in ("reply_to", "client_name"):
        if getattr(m, name, None):
            return str(getattr(m, name))
    requester = m.dispatch.requester if hasattr(m, "dispatch") else m.requester
    return str(requester.client_name)


def outcome(m: Any, status: str, value: Any = None, reason: str = "") -> MethodOutcome:
    failure = None
    if status == "failed":
        failure = FailureInfo(kind="remote", class_name="ValueError", message=reason)
    return MethodOutcome(
        workflow_name=m.workflow_name,
        workflow_id=m.workflow_id,
        method_run_id=getattr(m, "method_run_id", m.workflow_id),
        method_name="add",
        status=status,
        value=value,
        failure=failure,
    )


@pytest.fixture
async def transport() -> AsyncIterator[InMemoryTransport]:
    async with InMemoryTransport() as t:
        yield t


@pytest.fixture
async def engine(transport: InMemoryTransport) -> Engine:
    e = Engine(transport)
    await transport.subscribe("workflow-cmd:Adder", "engine", e.handle)
    await transport.subscribe("workflow-tag:Adder", "tags", e.handle)
    return e


async def test_a_result_is_final(transport: InMemoryTransport, engine: Engine) -> None:
    engine.reply = lambda m: [outcome(m, "completed", 5)] if isinstance(m, DispatchWorkflow) else []
    async with InfiniticClient(transport=transport) as client:
        deferred = await client.dispatch(client.new_workflow(Adder).add, 2, 3)
        assert isinstance(deferred, WorkflowDeferred)
        assert await deferred == 5
        assert await deferred == 5
    assert len(engine.of(DispatchWorkflow)) == 1
    assert engine.of(WaitMethod) == []


async def test_awaiting_again_after_a_failure_asks_the_instance_again(
    transport: InMemoryTransport, engine: Engine
) -> None:
    answers = iter(["failed", "failed", "completed"])

    def reply(m: Message) -> list[Message]:
        status = next(answers)
        return [outcome(m, status, 7 if status == "completed" else None, "boom")]

    engine.reply = reply
    async with InfiniticClient(transport=transport) as client:
        deferred = await client.dispatch(client.new_workflow(Adder).add, 3, 4)
        for _ in range(2):  # the failure stands
            with pytest.raises(WorkflowFailedError, match="boom"):
                await deferred
        assert await deferred == 7  # the method went on (e.g. its task was retried)
        assert await deferred == 7
    waits = engine.of(WaitMethod)
    assert len(waits) == 2
    assert {(w.workflow_id, w.method_run_id) for w in waits} == {(deferred.id, deferred.id)}


async def test_an_outcome_that_comes_by_itself_after_a_failure_is_kept(
    transport: InMemoryTransport, engine: Engine
) -> None:
    engine.reply = lambda m: [outcome(m, "failed", reason="first")]
    async with InfiniticClient(transport=transport) as client:
        deferred = await client.dispatch(client.new_workflow(Adder).add, 1, 1)
        with pytest.raises(WorkflowFailedError):
            await deferred
        # The instance goes on by itself (retried by someone else) and tells its requesters.
        (dispatch,) = engine.of(DispatchWorkflow)
        await transport.publish(
            response_topic(client.name), encode_message(outcome(dispatch, "completed", 2))
        )
        await asyncio.sleep(0.05)
        assert await deferred == 2
    assert engine.of(WaitMethod) == []


async def test_a_start_with_a_custom_id_follows_the_running_instance(
    transport: InMemoryTransport, engine: Engine
) -> None:
    def reply(m: Message) -> list[Message]:
        request_id = m.request_id  # type: ignore[attr-defined]
        resolved = WorkflowDispatchResolved(
            request_id=request_id, workflow_id="existing", created=False
        )
        done = MethodOutcome(
            workflow_name="Adder",
            workflow_id="existing",
            method_run_id="existing",
            method_name="add",
            status="completed",
            value=42,
        )
        return [resolved, done]

    engine.reply = reply
    async with InfiniticClient(transport=transport) as client:
        stub = client.new_workflow(Adder, tags={"customId:order-1"})
        deferred = await client.dispatch(stub.add, 1, 2)
        assert deferred.id == "existing"
        assert await deferred == 42


async def test_a_request_without_a_tag_engine_times_out_naming_the_workflow(
    transport: InMemoryTransport,
) -> None:
    async with InfiniticClient(transport=transport, request_timeout=0.1) as client:
        with pytest.raises(TimeoutError, match="is a worker of Adder running"):
            await client.get_ids(client.get_workflow_by_tag(Adder, "t"))


async def test_a_by_tag_dispatch_is_its_own_kind_of_deferred(
    transport: InMemoryTransport, engine: Engine
) -> None:
    async with InfiniticClient(transport=transport) as client:
        deferred: Any = await client.dispatch(client.get_workflow_by_tag(Adder, "t").add, 1, 2)
        assert isinstance(deferred, ByTagDeferred)
        assert not isinstance(deferred, WorkflowDeferred)
        assert deferred.tag == "t"
        with pytest.raises(InfiniticError, match="no single workflow id"):
            _ = deferred.id
        with pytest.raises(InfiniticError, match="no single result"):
            await deferred


async def test_closing_fails_the_waits_and_leaves_no_unretrieved_exception(
    transport: InMemoryTransport, engine: Engine
) -> None:
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    client = InfiniticClient(transport=transport, request_timeout=30)
    await client.start()
    awaited = await client.dispatch(client.new_workflow(Adder).add, 1, 2)
    await client.dispatch(client.new_workflow(Adder).add, 3, 4)  # nobody awaits it
    waiting = asyncio.ensure_future(awaited.result())
    custom = asyncio.ensure_future(  # waits for the tag engine's reply
        client.dispatch(client.new_workflow(Adder, tags={"customId:x"}).add, 5, 6)
    )
    await asyncio.sleep(0.05)
    await client.close()
    for pending in (waiting, custom):
        with pytest.raises(InfiniticError, match="was closed"):
            await pending
    del awaited, waiting, custom
    gc.collect()
    await asyncio.sleep(0.01)
    loop.set_exception_handler(None)
    assert unretrieved == []
