"""InMemoryTransport specifics beyond the transport contract suite (tests/contracts/transport)."""

from __future__ import annotations

import asyncio

import pytest

from infinitic.exceptions import ConfigurationError
from infinitic.transport import ConsumerSettings, InMemoryTransport, SubscriptionType
from infinitic.transport import TransportMessage as Message


async def test_dead_letters_are_kept_for_inspection() -> None:
    async with InMemoryTransport() as transport:

        async def failing(message: Message) -> None:
            raise ValueError("bad")

        settings = ConsumerSettings(max_redeliveries=1, redelivery_delay=0)
        await transport.subscribe("t", "s", failing, settings)
        await transport.publish("t", b"x", properties={"p": "1"})
        async with asyncio.timeout(5):
            while not transport.dead_letters():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        (letter,) = transport.dead_letters("t")
        assert letter.error == "ValueError: bad"
        assert letter.message.data == b"x"
        assert transport.dead_letters("other") == []


async def test_pending_and_idle() -> None:
    async with InMemoryTransport() as transport:
        await transport.publish("t", b"1")
        assert transport.pending("t", "s") == 1
        got: list[bytes] = []

        async def handler(message: Message) -> None:
            got.append(message.data)

        await transport.subscribe("t", "s", handler)
        async with asyncio.timeout(5):
            while not transport.idle():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert got == [b"1"]
        assert transport.pending("t", "s") == 0


async def test_subscription_type_and_exclusivity_are_checked() -> None:
    async with InMemoryTransport() as transport:

        async def handler(message: Message) -> None:
            pass

        exclusive = ConsumerSettings(type=SubscriptionType.EXCLUSIVE)
        await transport.subscribe("t", "x", handler, exclusive)
        with pytest.raises(ConfigurationError):
            await transport.subscribe("t", "x", handler, exclusive)
        with pytest.raises(ConfigurationError):
            await transport.subscribe("t", "x", handler, ConsumerSettings())


async def test_closed_transport_refuses_work() -> None:
    transport = InMemoryTransport()
    await transport.close()
    await transport.close()
    with pytest.raises(RuntimeError):
        await transport.publish("t", b"x")


async def test_an_outbox_with_a_message_too_large_sends_nothing() -> None:
    from infinitic.common.messages import CancelWorkflow, DispatchMethod
    from infinitic.exceptions import MessageTooLargeError
    from infinitic.transport import Outbox

    async with InMemoryTransport(max_message_bytes=2_000) as transport:
        out = Outbox()
        out.add("a", CancelWorkflow(workflow_name="W", workflow_id="id-1"))
        big = DispatchMethod(
            workflow_name="W",
            workflow_id="id-2",
            method_run_id="r",
            method_name="grow",
            method_args=["x" * 3_000],
        )
        out.add("b", big)
        with pytest.raises(MessageTooLargeError) as raised:
            await out.send(transport)
        assert transport.published_count == 0
        assert "DispatchMethod for W.grow (id id-2)" in str(raised.value)
        assert raised.value.topic == "b"
        assert raised.value.limit == 2_000
        unlimited = InMemoryTransport(max_message_bytes=None)
        async with unlimited:
            await out.send(unlimited)
        assert unlimited.published_count == 2


async def test_a_topic_without_subscriber_keeps_its_last_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with InMemoryTransport(max_backlog=3) as transport:
        for i in range(5):
            await transport.publish("events", str(i).encode())
        await transport.publish("other", b"kept")
        assert transport.pending("events", "s") == 3
        warnings = [r.getMessage() for r in caplog.records if "has no subscriber" in r.getMessage()]
        assert warnings == [
            "events has no subscriber: only its last 3 messages are kept (the oldest are "
            "dropped; max_backlog of InMemoryTransport)"
        ]
        seen: list[bytes] = []

        async def handler(message: Message) -> None:
            seen.append(message.data)

        await transport.subscribe("events", "s", handler, ConsumerSettings())
        async with asyncio.timeout(5):
            while len(seen) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert seen == [b"2", b"3", b"4"]
    with pytest.raises(ValueError, match="max_backlog must be at least 1"):
        InMemoryTransport(max_backlog=0)
