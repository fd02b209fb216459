"""Event listeners: a failing one retries then dead-letters its batch (never loses it), a sync
one runs in a thread, events off send nothing, allow and deny lists choose the topics, and the
eventListener: section of a configuration (issue 13)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from cloudevents.core.v1.event import CloudEvent

from infinitic.client import InfiniticClient
from infinitic.common import decode_message
from infinitic.common.events import EventBatch
from infinitic.exceptions import ConfigurationError
from infinitic.transport import (
    InMemoryTransport,
    Transport,
    TransportMessage,
    dead_letter_topic,
)
from infinitic.worker import EventListenerConfig, InfiniticWorker
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow

from .support import WAIT, Collector, make_transport, transport, worker

__all__ = ["transport"]  # the fixture

STATE_EVENTS = "workflow-state-events:BankWorkflow"


def bank_worker(t: Transport, **options: Any) -> InfiniticWorker:
    w = worker(t, **options)
    w.add_service(InMemoryBank({"a": 1000, "b": 0}), interface=BankService)
    w.add_service(PrintingEmails(), interface=EmailService)
    w.add_workflow(BankWorkflow)
    return w


async def wire(client: InfiniticClient, i: int = 0) -> str:
    deferred = await client.dispatch(client.new_workflow(BankWorkflow).wire, f"w{i}", "a", "b", 1)
    await deferred.result()
    return deferred.id


def completed(workflow_id: str):  # type: ignore[no-untyped-def]
    def done(events: list[CloudEvent]) -> bool:
        return any(
            e.get_type() == "infinitic.workflow.completed" and e.get_subject() == workflow_id
            for e in events
        )

    return done


async def test_a_failing_listener_retries_its_batch_then_dead_letters_it(
    transport: Transport,
) -> None:
    calls: list[list[str]] = []

    async def failing(events: list[CloudEvent]) -> None:
        calls.append([e.get_id() for e in events])
        raise RuntimeError("listener down")

    dead: list[TransportMessage] = []
    arrived = asyncio.Event()

    async def on_dead(message: TransportMessage) -> None:
        dead.append(message)
        arrived.set()

    await transport.subscribe(dead_letter_topic(STATE_EVENTS), "test", on_dead)
    w = bank_worker(transport, max_redeliveries=2)
    w.add_event_listener(failing, batch={"max_messages": 1000, "max_seconds": 0.01})
    async with w, InfiniticClient(transport=transport) as client:
        await wire(client)  # the engines never wait for the listener
        async with asyncio.timeout(WAIT):
            await arrived.wait()
    batch = decode_message(dead[0].data)
    assert isinstance(batch, EventBatch)
    ids = {f"{part.message_id}-{i}" for part in batch.parts for i in range(len(part.events))}
    tries = [c for c in calls if ids <= set(c)]
    assert len(tries) == 3  # the first delivery and 2 redeliveries


async def test_a_listener_failing_once_gets_every_event_again(transport: Transport) -> None:
    collector = Collector()
    failed: list[str] = []

    async def once(events: list[CloudEvent]) -> None:
        if not failed:
            failed.append(events[0].get_id())
            raise RuntimeError("first call fails")
        await collector(events)

    w = bank_worker(transport)
    w.add_event_listener(once, batch={"max_messages": 1000, "max_seconds": 0.01})
    async with w, InfiniticClient(transport=transport) as client:
        wid = await wire(client)
        await collector.wait_for(completed(wid))
        await collector.wait_for(lambda events: failed[0] in {e.get_id() for e in events})


class FailingEvents(InMemoryTransport):
    """An in-memory transport whose second publish on the state engine's events topic fails."""

    def __init__(self) -> None:
        super().__init__()
        self.state_events = 0

    async def publish(self, topic: str, data: bytes, **options: Any) -> None:
        if topic == STATE_EVENTS:
            self.state_events += 1
            if self.state_events == 2:
                raise ConnectionError("events topic unreachable")
        await super().publish(topic, data, **options)


async def test_a_cycle_whose_events_are_not_published_runs_again() -> None:
    t = FailingEvents()
    collector = Collector()
    w = bank_worker(t)
    w.add_event_listener(collector, batch={"max_seconds": 0.01})
    async with w, InfiniticClient(transport=t) as client:
        wid = await wire(client)
        events = await collector.wait_for(completed(wid))
    assert t.state_events == 5  # 4 cycles, one of them twice
    # the cycle of the first task's result failed on its events: its message came again, and
    # its state was stored only then, with its events published
    names = [
        data["taskCompleted"]["taskName"]
        for e in events
        if e.get_type() == "infinitic.workflow.taskCompleted"
        and isinstance(data := e.get_data(), dict)
    ]
    assert names == ["withdraw", "deposit", "send"]


async def test_a_sync_listener_runs_in_a_thread(transport: Transport) -> None:
    loop = asyncio.get_running_loop()
    seen: list[CloudEvent] = []
    threads: set[int] = set()
    changed = asyncio.Event()

    def sync_listener(events: list[CloudEvent]) -> None:
        threads.add(threading.get_ident())
        seen.extend(events)
        loop.call_soon_threadsafe(changed.set)

    w = bank_worker(transport)
    w.add_event_listener(sync_listener, batch={"max_seconds": 0.01})
    async with w, InfiniticClient(transport=transport) as client:
        wid = await wire(client)
        async with asyncio.timeout(WAIT):
            while not completed(wid)(seen):
                changed.clear()
                await changed.wait()
    assert threading.get_ident() not in threads


async def test_events_off_send_nothing_extra() -> None:
    counts = []
    for events in (True, False):
        t = InMemoryTransport()
        async with bank_worker(t, events=events), InfiniticClient(transport=t) as client:
            before = t.published_count
            await wire(client)
            counts.append(t.published_count - before)
        # nobody listens: what was published waits on the events topics
        waiting = t.pending(STATE_EVENTS, "any") + t.pending(
            "service-executor-events:BankService", "any"
        )
        assert (waiting > 0) is events
    on, off = counts
    # one wire alone: one message per message handled (nothing to group with), 4 by the state
    # engine (the start and 3 results), 3 by the service executors
    assert on - off == 7


class RemoteEvents(InMemoryTransport):
    """An in-memory transport whose events publishes take a broker's round trip."""

    async def publish(self, topic: str, data: bytes, **options: Any) -> None:
        if "-events:" in topic:
            await asyncio.sleep(0.005)
        await super().publish(topic, data, **options)


async def test_the_events_of_concurrent_cycles_share_messages() -> None:
    t = RemoteEvents()
    messages: list[TransportMessage] = []

    async def keep(message: TransportMessage) -> None:
        messages.append(message)

    await t.subscribe(STATE_EVENTS, "test", keep)
    w = worker(t)
    w.add_service(InMemoryBank({"a": 1000, "b": 0}), interface=BankService, concurrency=20)
    w.add_service(PrintingEmails(), interface=EmailService, concurrency=20)
    w.add_workflow(BankWorkflow, concurrency=20)  # cycles of 20 instances at once
    async with w, InfiniticClient(transport=t) as client:
        ids = await asyncio.gather(*(wire(client, i) for i in range(20)))
    parts = []
    for m in messages:
        batch = decode_message(m.data)
        assert isinstance(batch, EventBatch)
        parts.extend(batch.parts)
    handled = [p.message_id for p in parts]
    assert len(handled) == len(set(handled)) == 4 * len(ids)  # every cycle's part, once
    # grouped: the parts handed in while publishes are under way share a message
    assert len(messages) < len(parts)
    subjects = {e.subject for p in parts for e in p.events if e.type.endswith(".completed")}
    assert set(ids) <= subjects


async def test_allow_and_deny_lists_choose_whose_events(transport: Transport) -> None:
    everything = Collector()
    filtered = Collector()
    w = bank_worker(transport)
    w.add_event_listener(everything, subscription_name="all", batch={"max_seconds": 0.01})
    w.add_event_listener(
        filtered,
        subscription_name="filtered",
        batch={"max_seconds": 0.01},
        services={"deny": ["EmailService"]},
        workflows={"allow": ["BankWorkflow", "NotRunHere"]},
    )
    async with w, InfiniticClient(transport=transport) as client:
        wid = await wire(client)
        everything_seen = await everything.wait_for(
            lambda events: (
                completed(wid)(events)
                and any("/services/executor/EmailService" in e.get_source() for e in events)
            )
        )
        filtered_seen = await filtered.wait_for(
            lambda events: (
                completed(wid)(events)
                and sum("/services/executor/BankService" in e.get_source() for e in events) == 6
            )
        )
    assert any("EmailService" in e.get_source() for e in everything_seen)
    assert not any("EmailService" in e.get_source() for e in filtered_seen)


def test_listed_entities_extend_and_deny_lists_restrict() -> None:
    config = EventListenerConfig(
        workflows={"allow": ["A", "Elsewhere"], "disallow": ["A"]},
        services={"deny": ["S2"]},
    )
    assert config.workflows.chosen(["A", "B"]) == ["Elsewhere"]
    assert config.services.chosen(["S1", "S2"]) == ["S1"]
    assert config.subscription == "infinitic-event-listener"


def test_the_event_listener_section_of_a_configuration() -> None:
    worker = InfiniticWorker.from_config(
        {
            "transport": {"inMemory": {}},
            "storage": {"inMemory": {}},
            "eventListener": {
                "class": "infinitic_examples.event_listeners.JsonLinesWriter",
                "concurrency": 2,
                "subscriptionName": "audit",
                "batch": {"maxMessages": 50, "maxSeconds": 0.5},
                "workflows": {"allow": ["BankWorkflow"], "listRefreshSeconds": 10},
            },
            "workflows": [
                {
                    "name": "BankWorkflow",
                    "class": "infinitic_examples.bank_wire.workflows.BankWorkflow",
                }
            ],
        }
    )
    [(listener, config)] = worker.events.listeners
    assert type(listener).__name__ == "JsonLinesWriter"
    assert config.concurrency == 2
    assert config.subscription == "audit"
    assert config.batch.max_messages == 50
    assert config.workflows.allow == ["BankWorkflow"]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"class": "infinitic_examples.bank_wire.services.BankService"}, "eventListener"),
        ({"class": "json.dumps", "concurrency": 0}, "concurrency"),
        ({"class": "json.dumps", "batch": {"maxMessages": 0}}, "maxMessages"),
        ({"class": "json.dumps", "unknown": 1}, "unknown"),
        ({"concurrency": 1}, "eventListener.class"),
    ],
)
def test_a_bad_event_listener_section_is_named(section: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        InfiniticWorker.from_config(
            {
                "transport": {"inMemory": {}},
                "storage": {"inMemory": {}},
                "eventListener": section,
                "workflows": [{"name": "W", "stateEngine": {}}],
            }
        )


def test_event_listeners_are_refused_in_a_service_section() -> None:
    with pytest.raises(ConfigurationError, match="top level"):
        InfiniticWorker.from_config(
            {
                "transport": {"inMemory": {}},
                "storage": {"inMemory": {}},
                "workflows": [{"name": "W", "eventListener": {"class": "json.dumps"}}],
            }
        )


@pytest.mark.pulsar
async def test_a_new_subscription_name_reads_the_events_from_the_start(
    request: pytest.FixtureRequest,
) -> None:
    """pulsar-lite keeps every message: a listener with a new subscription name gets the events
    published before it existed (Apache Pulsar: within the namespace's retention)."""
    t = make_transport("pulsar-lite", request)
    await t.start()
    try:
        first = Collector()
        w = bank_worker(t)
        w.add_event_listener(first, subscription_name="first", batch={"max_seconds": 0.01})
        async with w, InfiniticClient(transport=t) as client:
            wid = await wire(client)
            seen_first = await first.wait_for(completed(wid))
        later = Collector()
        w = bank_worker(t)
        w.add_event_listener(later, subscription_name="later", batch={"max_seconds": 0.01})
        async with w:
            seen_later = await later.wait_for(completed(wid))
        flow = [e.get_id() for e in seen_first if e.get_subject() == wid]
        assert flow
        assert set(flow) <= {e.get_id() for e in seen_later}
    finally:
        await t.close()
