"""Worker and client configuration: YAML shape, environment overrides, clear errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import infinitic.worker
from infinitic.cache import CachedStorage
from infinitic.client import InfiniticClient
from infinitic.exceptions import ConfigurationError
from infinitic.services import ExponentialBackoff
from infinitic.storage import CompressedKeyValueStorage, InMemoryStorage
from infinitic.transport import InMemoryTransport, transport_from_config
from infinitic.worker import InfiniticWorker, load_config
from infinitic.worker._cli import main
from infinitic_examples.bank_wire.workflows import BankWorkflow

BANK_YAML = """
name: bank-worker
transport:
  inMemory:
storage:
  inMemory:
  compression: gzip
  cache: {maximumSize: 100, ttl: 60}
services:
  - name: BankService
    class: infinitic_examples.bank_wire.services.InMemoryBank
    interface: infinitic_examples.bank_wire.services.BankService
    executor:
      concurrency: 4
      retry: {minimumSeconds: 0.01, maximumSeconds: 0.1, maximumRetries: 2}
      timeoutSeconds: 5
    tagEngine:  # with an executor: section, the engines run when named
  - name: EmailService
    class: infinitic_examples.bank_wire.services.PrintingEmails
    interface: infinitic_examples.bank_wire.services.EmailService
    concurrency: 2
workflows:
  - name: BankWorkflow
    class: infinitic_examples.bank_wire.workflows.BankWorkflow
    concurrency: 4
    checkMode: strict
    cacheSize: 10
"""


def test_public_api() -> None:
    assert infinitic.worker.__all__ == [
        "CacheConfig",
        "DashboardConfig",
        "EntityListConfig",
        "EventBatchConfig",
        "EventListenerConfig",
        "InfiniticConfig",
        "InfiniticWorker",
        "JsonLogFormatter",
        "LogContextFilter",
        "MetricsConfig",
        "RetryConfig",
        "ServiceConfig",
        "StorageConfig",
        "UnreachableError",
        "WorkerMetrics",
        "WorkflowConfig",
        "configure_logging",
        "current_log_context",
        "load_config",
    ]
    for name in infinitic.worker.__all__:
        assert getattr(infinitic.worker, name).__doc__


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "infinitic.yml"
    path.write_text(text)
    return path


def test_yaml_shape(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BANK_YAML), environ={})
    assert config.name == "bank-worker"
    assert config.storage.backend == "in_memory"
    assert config.storage.cache is not None
    assert config.storage.cache.size == 100
    bank = config.services[0]
    assert (bank.concurrency, bank.timeout_seconds) == (4, 5.0)
    assert bank.retry is not None
    assert bank.retry.maximum_retries == 2
    assert config.workflows[0].check_mode == "strict"


def test_environment_overrides_any_key(tmp_path: Path) -> None:
    environ = {
        "INFINITIC__SERVICES__0__CONCURRENCY": "9",
        "INFINITIC__STORAGE__CACHE__TTL": "5",
        "INFINITIC__WORKFLOW_CACHE_SIZE": "0",
        "INFINITIC__STORAGE__REDIS__HOST": "db.example",  # adds a section
        "INFINITIC__STORAGE__IN_MEMORY": "null",
        "OTHER": "x",
    }
    config = load_config(write(tmp_path, BANK_YAML), environ=environ)
    assert config.services[0].concurrency == 9
    assert config.storage.cache is not None
    assert config.storage.cache.ttl == 5
    assert config.workflow_cache_size == 0
    assert config.storage.redis == {"host": "db.example"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("services: [{class: a.B, concurrency: 0}]", "services.0.concurrency"),
        ("workflows: [{klass: a.B}]", "workflows.0.klass"),
        ("storage: {redis: {}, mysql: {}}", "name one storage backend"),
        ("storage: {compression: lz4}", "storage.compression"),
        ("storage: {redis: {hots: x}}", "storage.redis.hots: unknown option"),
        ("storage: {postgres: {port: many}}", "storage.postgres.port"),
        ("transport: {kafka: {}}", "transport.kafka: unknown transport"),
        ("transport: {pulsar: {tenantt: x}}", "transport.pulsar.tenantt"),
        ("services: [{class: nowhere.Bank}]", "services.0.class"),
        ("services: [{class: infinitic_examples.Nope}]", "services.0.class"),
        ("workflows: [{class: infinitic_examples.bank_wire.services.InMemoryBank}]", "Workflow"),
        ("- just a list", "mapping"),
        ("a: [unclosed", "not valid YAML"),
    ],
)
def test_errors_name_the_bad_key(tmp_path: Path, text: str, expected: str) -> None:
    if text.startswith(("services", "workflows", "storage")):
        text = "transport: {inMemory: {}}\n" + text
    with pytest.raises(ConfigurationError, match=expected.replace(".", r"\.")):
        InfiniticWorker.from_yaml(write(tmp_path, text), environ={})


def test_built_objects(tmp_path: Path) -> None:
    worker = InfiniticWorker.from_yaml(write(tmp_path, BANK_YAML), environ={})
    assert isinstance(worker.transport, InMemoryTransport)
    assert isinstance(worker.storage, CachedStorage)
    assert isinstance(worker.storage.storage.key_value, CompressedKeyValueStorage)
    assert worker.storage.storage.key_value.compression == "gzip"
    service = worker._services["BankService"]
    assert isinstance(service.retry, ExponentialBackoff)
    assert service.retry.maximum_retries == 2
    assert worker._option("BankWorkflow", 1, None) == 10
    assert worker._option("BankWorkflow", 0, None).value == "strict"


def test_storage_backends_are_built_lazily() -> None:
    from infinitic.storage import MySQLStorage, PostgresStorage, RedisStorage

    cases = {
        "redis": ({"url": "redis://h:1/2", "keyPrefix": "p:", "user": "u"}, RedisStorage),
        "postgres": ({"host": "h", "port": "5433", "schema": "s"}, PostgresStorage),
        "mysql": ({"host": "h", "database": "d", "maxPoolSize": 3}, MySQLStorage),
    }
    for backend, (options, cls) in cases.items():
        worker = InfiniticWorker.from_config({**MEM, "storage": {backend: options}}, environ={})
        assert isinstance(worker.storage, cls)  # nothing connects before the first call
    redis = InfiniticWorker.from_config(
        {**MEM, "storage": {"redis": cases["redis"][0]}}, environ={}
    )
    assert redis.storage.settings.username == "u"  # type: ignore[attr-defined]
    postgres = InfiniticWorker.from_config(
        {**MEM, "storage": {"postgres": cases["postgres"][0]}}, environ={}
    )
    assert postgres.storage.settings.port == 5433  # type: ignore[attr-defined]


async def test_worker_from_yaml_runs_and_closes_what_it_built(tmp_path: Path) -> None:
    worker = InfiniticWorker.from_yaml(write(tmp_path, BANK_YAML), environ={})
    async with worker:
        client = worker.client
        results = await asyncio.gather(
            *(client.new_workflow(BankWorkflow).wire(f"w{i}", "a", "b", 1) for i in range(5))
        )
    assert len(set(results)) == 5
    bank = worker._services["BankService"].implementation
    assert bank.balances == {"a": -5, "b": 5}  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        await worker.transport.publish("x", b"")  # the worker closed the transport it owned


def test_client_from_yaml_reads_only_the_transport(tmp_path: Path) -> None:
    client = InfiniticClient.from_yaml(write(tmp_path, BANK_YAML))
    assert client.name.startswith("client-")  # ``name`` is the worker's
    named = InfiniticClient.from_yaml(write(tmp_path, BANK_YAML + "client: {name: teller}\n"))
    assert named.name == "teller"
    assert load_config(tmp_path / "infinitic.yml", environ={}).client == {"name": "teller"}
    assert named._core.request_timeout == 30.0  # the default
    patient = InfiniticClient.from_config(
        {"transport": {"inMemory": None}, "client": {"requestTimeoutSeconds": 2.5}}
    )
    assert patient._core.request_timeout == 2.5
    forever = InfiniticClient.from_config(
        {"transport": {"inMemory": None}, "client": {"requestTimeoutSeconds": None}}
    )
    assert forever._core.request_timeout is None
    with pytest.raises(ConfigurationError, match="requestTimeoutSeconds must be a positive"):
        InfiniticClient.from_config(
            {"transport": {"inMemory": None}, "client": {"requestTimeoutSeconds": "soon"}}
        )
    with pytest.raises(ConfigurationError, match=r"client: unknown keys \['nme'\]"):
        InfiniticClient.from_config({"transport": {"inMemory": None}, "client": {"nme": "x"}})
    with pytest.raises(ConfigurationError, match=r"transport\.pulsarLite"):
        InfiniticClient.from_config({"transport": {"pulsarLite": {}}})  # needs the port
    with pytest.raises(ConfigurationError, match="transport: name a transport"):
        InfiniticClient.from_config({"storage": {"inMemory": None}})


def test_transport_env_override_for_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFINITIC__TRANSPORT__PULSAR__TENANT", "prod")
    client = InfiniticClient.from_config({"transport": {"pulsar": {"tenant": "dev"}}})
    assert client.transport.settings.tenant == "prod"  # type: ignore[attr-defined]
    assert transport_from_config({"pulsar": {}}).settings.broker_flavor == "auto"  # type: ignore[attr-defined]


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--config", str(write(tmp_path, BANK_YAML)), "--check"]) == 0
    assert "valid (2 services, 1 workflows)" in capsys.readouterr().out
    bad = write(tmp_path, "services: [{class: a.B, concurrency: -1}]")
    assert main(["worker", "--config", str(bad)]) == 2
    assert "services.0.concurrency" in capsys.readouterr().err


def test_in_memory_storage_takes_no_option() -> None:
    with pytest.raises(ConfigurationError, match=r"storage\.inMemory"):
        InfiniticWorker.from_config({**MEM, "storage": {"inMemory": {"size": 1}}}, environ={})
    assert isinstance(InfiniticWorker.from_config(MEM, environ={}).storage, InMemoryStorage)


MEM = {"transport": {"inMemory": {}}}


def _readme_yaml_blocks() -> list[str]:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("## Configuration and backends", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```yaml\n")[1:]]


def test_readme_configuration_examples_are_valid() -> None:
    import yaml

    blocks = _readme_yaml_blocks()
    assert len(blocks) == 9
    documents = [doc for block in blocks for doc in yaml.safe_load_all(block)]
    assert len(documents) == 12
    for document in documents:
        # builds, connects nothing (a worker needs a transport: in memory when none is shown)
        worker = InfiniticWorker.from_config({**MEM, **document}, environ={})
        assert worker.transport is not None
        if "transport" in document:
            assert InfiniticClient.from_config(document).name.startswith("client-")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.pulsar
async def test_worker_with_embedded_broker_and_client_from_one_file(tmp_path: Path) -> None:
    pytest.importorskip("pulsar_lite")
    text = BANK_YAML.replace(
        "transport:\n  inMemory:\n",
        f"transport:\n  pulsarLite: {{port: {_free_port()}, dataDir: {tmp_path / 'broker'}}}\n",
    )
    path = write(tmp_path, text)
    worker = InfiniticWorker.from_yaml(path, environ={})
    async with worker, InfiniticClient.from_yaml(path) as client:
        results = await asyncio.gather(
            *(client.new_workflow(BankWorkflow).wire(f"w{i}", "a", "b", 1) for i in range(5))
        )
    assert len(set(results)) == 5
    assert worker.transport.broker.pid is None  # type: ignore[attr-defined]  # stopped
    assert (tmp_path / "broker" / "db.rocksdb").exists()  # an explicit data dir is kept


async def test_engine_concurrencies_from_configuration(tmp_path: Path) -> None:
    from infinitic.transport import ConsumerSettings

    text = BANK_YAML.replace(
        "    cacheSize: 10\n",
        "    cacheSize: 10\n    stateEngine: {concurrency: 6}\n    tagEngine: {concurrency: 3}\n",
    ).replace(
        "    concurrency: 2\n",
        "    concurrency: 2\n    tagEngine:\n      concurrency: 5\n",
    )
    worker = InfiniticWorker.from_yaml(write(tmp_path, text), environ={})
    seen: dict[str, int] = {}

    class Recording(InMemoryTransport):
        async def subscribe(self, topic: str, subscription: str, handler: Any, settings: Any):  # type: ignore[no-untyped-def, override]
            assert isinstance(settings, ConsumerSettings)
            seen[topic] = settings.concurrency
            return await super().subscribe(topic, subscription, handler, settings)

    worker.transport = Recording()
    async with worker:
        pass
    assert seen["workflow-task-executor:BankWorkflow"] == 4  # the workflow's concurrency
    assert seen["workflow-engine:BankWorkflow"] == 6
    assert seen["workflow-cmd:BankWorkflow"] == 6
    assert seen["workflow-tag:BankWorkflow"] == 3
    assert seen["task-executor:EmailService"] == 2
    assert seen["task-tag:EmailService"] == 5
    assert seen["task-tag:BankService"] == 4  # default: the service's concurrency
    bad = BANK_YAML.replace(
        "    cacheSize: 10\n", "    cacheSize: 10\n    stateEngine:\n      cache: {size: 5}\n"
    )
    with pytest.raises(ConfigurationError, match=r"workflows\.0\.stateEngine.*'cache'"):
        InfiniticWorker.from_yaml(write(tmp_path, bad), environ={})
    with pytest.raises(ConfigurationError, match="tag_engine_concurrency must be an integer >= 1"):
        InfiniticWorker(transport=InMemoryTransport(), storage=None).add_workflow(  # type: ignore[arg-type]
            BankWorkflow, tag_engine_concurrency=0
        )
