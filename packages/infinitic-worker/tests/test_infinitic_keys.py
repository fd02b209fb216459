"""More of Infinitic's configuration keys: accepted when this project has the setting (under
Infinitic's name), refused by name with the reason when it does not."""

from __future__ import annotations

from typing import Any

import pytest

from infinitic.exceptions import ConfigurationError
from infinitic.services import ExponentialBackoff
from infinitic.transport import transport_from_config
from infinitic.worker import InfiniticWorker, load_config

MEM: dict[str, Any] = {"transport": {"inMemory": {}}}
BANK = "infinitic_examples.bank_wire.workflows.BankWorkflow"


def test_accepted_under_infinitic_names() -> None:
    config = load_config(
        {
            **MEM,
            "storage": {"cache": {"maximumSize": 5, "expireAfterWrite": 3}},
            "services": [{"executor": {"class": "a.B", "retry": {"backoffCoefficient": 3}}}],
            "workflows": [{"name": "BankWorkflow", "executor": {"classes": [BANK]}}],
        },
        environ={},
    )
    assert config.storage.cache is not None
    assert (config.storage.cache.size, config.storage.cache.ttl) == (5, 3)
    assert config.services[0].retry is not None
    assert config.services[0].retry.coefficient == 3
    assert config.workflows[0].class_paths == [BANK]


def test_workflow_versions_from_classes() -> None:
    worker = InfiniticWorker.from_config({**MEM, "workflows": [{"classes": [BANK]}]}, environ={})
    assert worker._workflows["BankWorkflow"].classes[0].__name__ == "BankWorkflow"
    with pytest.raises(ConfigurationError, match="one of them"):
        load_config({**MEM, "workflows": [{"class": BANK, "classes": [BANK]}]}, environ={})


def test_storage_pool_keys() -> None:
    postgres = {"host": "h", "maximumPoolSize": 7, "minimumIdle": 2}
    worker = InfiniticWorker.from_config({**MEM, "storage": {"postgres": postgres}}, environ={})
    settings: Any = worker.storage.settings  # type: ignore[attr-defined]
    assert (settings.max_pool_size, settings.min_pool_size) == (7, 2)
    redis = {"host": "h", "poolConfig": {"maxTotal": 9}}
    worker = InfiniticWorker.from_config({**MEM, "storage": {"redis": redis}}, environ={})
    assert worker.storage.settings.max_connections == 9  # type: ignore[attr-defined]
    redis = {"poolConfig": {"maxIdle": 1}}
    with pytest.raises(ConfigurationError, match=r"storage\.redis\.poolConfig\.maxIdle is not"):
        InfiniticWorker.from_config({**MEM, "storage": {"redis": redis}}, environ={})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"workflows": [{"class": BANK, "eventListener": {"class": "a.B"}}]},
            "'eventListener' is not supported: declare eventListener: at the top level",
        ),
        ({"logs": {"beautifyExceptions": True}}, "'logs' is not supported: configure Python"),
        ({"services": [{"class": "a.B", "batch": {"maxMessages": 5}}]}, "@batch"),
        ({"storage": {"compression": "bzip2"}}, "'bzip2' is not supported: use zstd"),
        ({"storage": {"cache": {"expireAfterAccess": 5}}}, "'expireAfterAccess' is not supported"),
        ({"workflows": [{"class": BANK, "tagEngine": {"cache": {}}}]}, "own storage: section"),
    ],
)
def test_refused_by_name_with_the_reason(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected.replace("(", r"\(")):
        load_config({**MEM, **data}, environ={})


def test_pulsar_keys_of_infinitic() -> None:
    section = {
        "pulsar": {
            "brokerServiceUrl": "pulsar://h:6650",
            "client": {"operationTimeoutSeconds": 5, "ioThreads": 2},
            "policies": {"messageTTLSeconds": 60, "retentionTimeMinutes": 5, "retentionSizeMB": 7},
        }
    }
    settings: Any = transport_from_config(section).settings  # type: ignore[attr-defined]
    assert (settings.operation_timeout_seconds, settings.io_threads) == (5, 2)
    policies = settings.policies
    assert (policies.message_ttl_in_seconds, policies.retention_time_in_minutes) == (60, 5)
    assert policies.retention_size_in_mb == 7
    with pytest.raises(ConfigurationError, match=r"policies\.timerTTLSeconds is not supported"):
        transport_from_config({"pulsar": {"policies": {"timerTTLSeconds": 1}}})


async def test_workflow_task_timeout_and_retry_keys() -> None:
    executor = {
        "class": BANK,
        "timeoutSeconds": 5,
        "retry": {"minimumSeconds": 0.5, "maximumRetries": 2, "backoffCoefficient": 3},
    }
    workflows = [{"executor": executor}, {"class": BANK, "name": "Plain"}]
    config = {**MEM, "workflowTaskIsolation": "thread", "workflows": workflows}
    worker = InfiniticWorker.from_config(config, environ={})
    async with worker:
        configured = worker.workflow_executor("BankWorkflow")
        assert configured.task_timeout == 5
        assert configured.task_retry == ExponentialBackoff(
            minimum_seconds=0.5, maximum_retries=2, coefficient=3, ignored_exceptions=[]
        )
        plain = worker.workflow_executor("Plain")  # Infinitic's defaults: 60 s, no retry
        assert (plain.task_timeout, plain.task_retry) == (60.0, None)
    with pytest.raises(ConfigurationError, match=r"workflows\.0\.timeoutSeconds"):
        load_config({**MEM, "workflows": [{"class": BANK, "timeoutSeconds": 0}]}, environ={})
    with pytest.raises(ConfigurationError, match="workflowTaskIsolation"):
        load_config({**MEM, "workflowTaskIsolation": "fiber"}, environ={})
