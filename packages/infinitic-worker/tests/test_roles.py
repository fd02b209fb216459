"""Separated deployments: a worker runs any subset of the roles of its services and workflows,
from add_service/add_workflow options or from Infinitic's YAML sections."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import ConfigurationError
from infinitic.storage import (
    InMemoryKeySetStorage,
    InMemoryKeyValueStorage,
    InMemoryStorage,
    Storage,
)
from infinitic.transport import ConsumerSettings, InMemoryTransport
from infinitic.worker import InfiniticWorker, load_config
from infinitic_examples.bank_wire.services import (
    BankService,
    EmailService,
    InMemoryBank,
    PrintingEmails,
)
from infinitic_examples.bank_wire.workflows import BankWorkflow

EX = "infinitic_examples.bank_wire"
MEM: dict[str, Any] = {"transport": {"inMemory": {}}}


class Recording(InMemoryTransport):
    """An in-memory transport remembering the topics subscribed to."""

    def __init__(self) -> None:
        super().__init__()
        self.topics: set[str] = set()

    async def subscribe(  # type: ignore[override]
        self, topic: str, subscription: str, handler: Any, settings: ConsumerSettings
    ) -> Any:
        self.topics.add(topic)
        return await super().subscribe(topic, subscription, handler, settings)


async def test_three_workers_with_separated_roles_complete_wires() -> None:
    transport, storage = InMemoryTransport(), InMemoryStorage()
    engines = InfiniticWorker(transport=transport, storage=storage, name="engines")
    engines.add_workflow("BankWorkflow")  # a name: the engines only
    engines.add_service(name="BankService")  # no implementation: the tag engine only
    engines.add_service(interface=EmailService)
    workflows = InfiniticWorker(transport=transport, storage=storage, name="workflows")
    workflows.add_workflow(BankWorkflow, state_engine=False, tag_engine=False)
    services = InfiniticWorker(transport=transport, storage=storage, name="services")
    services.add_service(InMemoryBank(), interface=BankService, tag_engine=False)
    services.add_service(PrintingEmails(), interface=EmailService, tag_engine=False)
    async with engines, workflows, services, InfiniticClient(transport=transport) as client:
        results = await asyncio.gather(
            *(
                client.new_workflow(BankWorkflow, tags={"t"}).wire(f"w{i}", "a", "b", 1)
                for i in range(10)
            )
        )
        assert len(set(results)) == 10
        assert await client.get_ids(client.get_workflow_by_tag(BankWorkflow, "t")) == []
        # the workflow code ran in the executors' worker only, through the broker
        assert workflows.workflow_executor("BankWorkflow").executed_tasks >= 40
        with pytest.raises(ConfigurationError, match="no started workflow executor"):
            engines.workflow_executor("BankWorkflow")


async def test_topics_consumed_per_role() -> None:
    transport = Recording()
    worker = InfiniticWorker(transport=transport, storage=InMemoryStorage())
    worker.add_workflow(BankWorkflow, state_engine=False)
    worker.add_service(name="BankService")
    async with worker:
        pass
    assert transport.topics == {
        "workflow-task-executor:BankWorkflow",
        "workflow-tag:BankWorkflow",
        "task-tag:BankService",
    }


class CountingKeyValues(InMemoryKeyValueStorage):
    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        self.puts += 1
        return await super().put(key, value, expected_version=expected_version)


class CountingSets(InMemoryKeySetStorage):
    def __init__(self) -> None:
        super().__init__()
        self.adds = 0

    async def add(self, key: str, member: str) -> None:
        self.adds += 1
        await super().add(key, member)


def counting() -> Storage:
    return Storage(CountingKeyValues(), CountingSets())


def counts(storage: Storage) -> tuple[int, int]:
    assert isinstance(storage.key_value, CountingKeyValues)
    assert isinstance(storage.key_set, CountingSets)
    return storage.key_value.puts, storage.key_set.adds


async def test_engines_own_storages() -> None:
    transport = InMemoryTransport()
    storage, states, tags = counting(), counting(), counting()
    worker = InfiniticWorker(transport=transport, storage=storage)
    worker.add_workflow(BankWorkflow, state_engine_storage=states, tag_engine_storage=tags)
    worker.add_service(InMemoryBank(), interface=BankService)
    worker.add_service(PrintingEmails(), interface=EmailService)
    async with worker, InfiniticClient(transport=transport) as client:
        wf = client.new_workflow(BankWorkflow, tags={"x"})
        deferred = await client.dispatch(wf.wire, "w", "a", "b", 1)
        await deferred
    # each engine wrote to its own storage, nothing went to the worker's
    assert counts(storage) == (0, 0)
    assert counts(states)[0] > 0
    assert counts(tags)[1] > 0


def test_registration_errors() -> None:
    worker = InfiniticWorker(transport=InMemoryTransport(), storage=InMemoryStorage())
    with pytest.raises(ConfigurationError, match="running its executor needs its class"):
        worker.add_workflow("BankWorkflow", executor=True)
    with pytest.raises(ConfigurationError, match="BankWorkflow runs nothing"):
        worker.add_workflow(BankWorkflow, executor=False, state_engine=False, tag_engine=False)
    with pytest.raises(ConfigurationError, match="needs the service's name"):
        worker.add_service()
    with pytest.raises(ConfigurationError, match="running its executor needs an implementation"):
        worker.add_service(name="S", executor=True)
    with pytest.raises(ConfigurationError, match="S runs nothing"):
        worker.add_service(name="S", tag_engine=False)


def _roles(data: dict[str, Any]) -> list[tuple[bool, ...]]:
    config = load_config({**MEM, **data}, environ={})
    return [(w.runs_executor, w.runs_state_engine, w.runs_tag_engine) for w in config.workflows] + [
        (s.runs_executor, s.runs_tag_engine) for s in config.services
    ]


def test_yaml_roles() -> None:
    bank = f"{EX}.workflows.BankWorkflow"
    assert _roles(
        {
            "workflows": [
                {"class": bank},  # a class, no executor: section: everything
                {"class": bank, "tagEngine": {"concurrency": 2}},  # still everything
                {"executor": {"class": bank}},  # the executor only
                {"executor": {"class": bank}, "stateEngine": None},  # and the state engine
                {"name": "W", "stateEngine": {}, "tagEngine": {}},  # the engines only
                {"name": "W", "tagEngine": None},  # the tag engine only
            ],
            "services": [
                {"class": f"{EX}.services.InMemoryBank"},
                {"executor": {"class": f"{EX}.services.InMemoryBank"}},
                {"name": "S", "tagEngine": {}},
            ],
        }
    ) == [
        (True, True, True),
        (True, True, True),
        (True, False, False),
        (True, True, False),
        (False, True, True),
        (False, False, True),
        (True, True),
        (True, False),
        (False, True),
    ]


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"workflows": [{"name": "W"}]}, r"workflows\.0: .*nothing to run"),
        ({"workflows": [{"stateEngine": {}}]}, "need the workflow's name"),
        ({"services": [{"name": "S"}]}, r"services\.0: .*nothing to run"),
        ({"services": [{"tagEngine": {}}]}, "needs the service's name"),
        ({"workflows": [{"name": "W", "tagEngine": {"storage": {"mysql": {}, "redis": {}}}}]},
         "name one storage backend"),
    ],
)  # fmt: skip
def test_yaml_role_errors(item: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        load_config({**MEM, **item}, environ={})


def test_an_executor_alone_needs_the_engines_storage() -> None:
    config = {
        "transport": {"pulsar": {"brokerServiceUrl": "pulsar://127.0.0.1:1"}},
        "workflows": [{"executor": {"class": f"{EX}.workflows.BankWorkflow"}}],
    }
    with pytest.raises(ConfigurationError, match=r"workflows\.0: a workflow executor without"):
        InfiniticWorker.from_config(config, environ={})


async def test_yaml_engine_storage_is_built_checked_and_closed() -> None:
    config = {
        **MEM,
        "workflows": [
            {
                "name": "BankWorkflow",
                "stateEngine": {"storage": {"inMemory": {}, "compression": "gzip"}},
                "tagEngine": {},
            }
        ],
    }
    worker = InfiniticWorker.from_config(config, environ={})
    roles = worker._workflows["BankWorkflow"]
    assert roles.state_engine_storage is not None
    assert roles.tag_engine_storage is None
    assert not roles.executor
    async with worker:
        pass


def test_a_dump_read_back_runs_the_same_roles() -> None:
    bank = f"{EX}.workflows.BankWorkflow"
    data = {
        **MEM,
        "workflows": [
            {"executor": {"class": bank, "concurrency": 3}, "tagEngine": {}},
            {"class": bank, "name": "Other"},
            {"name": "W", "stateEngine": {"concurrency": 2}},
        ],
        "services": [{"executor": {"class": f"{EX}.services.InMemoryBank"}}],
    }
    config = load_config(data, environ={})
    dumped = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["workflows"][0]["executor"]["class"] == bank
    assert dumped["workflows"][0]["executor"]["concurrency"] == 3
    assert "executor" not in dumped["workflows"][1]
    assert (
        _roles(dumped)
        == _roles(data)
        == [
            (True, False, True),
            (True, True, True),
            (False, True, False),
            (True, False),
        ]
    )
