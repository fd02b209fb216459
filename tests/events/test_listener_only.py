"""A worker that runs only an event listener (issue 13; what the dashboard's timeline needs
beside a broker): it starts when its allow lists name services or workflows, listens to the
events of other workers' engines, and is refused by name when it would listen to nothing."""

from __future__ import annotations

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import ConfigurationError
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport, Transport
from infinitic.worker import InfiniticWorker
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow

from .support import Collector, transport, worker

__all__ = ["transport"]  # the fixture


async def test_a_worker_running_only_a_listener_hears_other_workers(
    transport: Transport,
) -> None:
    engines = worker(transport)
    engines.add_service(InMemoryBank({"a": 1000, "b": 0}), interface=BankService)
    engines.add_service(PrintingEmails(), interface=EmailService)
    engines.add_workflow(BankWorkflow)
    collector = Collector()
    listening = worker(transport)
    listening.add_event_listener(
        collector,
        workflows={"allow": ["BankWorkflow"]},
        services={"allow": ["BankService"]},
        batch={"max_seconds": 0.01},
    )
    async with listening, engines, InfiniticClient(transport=transport) as client:
        deferred = await client.dispatch(client.new_workflow(BankWorkflow).wire, "w", "a", "b", 1)
        await deferred.result()
        events = await collector.wait_for(
            lambda es: (
                any(
                    e.get_type() == "infinitic.workflow.completed"
                    and e.get_subject() == deferred.id
                    for e in es
                )
                and sum(e.get_type() == "infinitic.task.completed" for e in es) >= 2
            )
        )
    sources = {e.get_source().split("/")[-2] for e in events}
    assert "stateEngine" in sources
    assert "executor" in sources  # BankService's executor
    services = {e.get_source() for e in events if "/services/" in e.get_source()}
    assert all(s.endswith("/BankService") for s in services)  # EmailService is not allowed


async def test_a_listener_with_nothing_to_listen_to_is_refused() -> None:
    listening = InfiniticWorker(transport=InMemoryTransport(), storage=InMemoryStorage())
    listening.add_event_listener(Collector())  # no allow list, and nothing run here
    with pytest.raises(ConfigurationError, match="nothing to run"):
        await listening.start()
