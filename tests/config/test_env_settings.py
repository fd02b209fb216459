"""``INFINITIC__...`` environment variables, read by pydantic-settings: the environment source
comes before the file's values, keys match whatever their spelling, numbers index the file's
lists, and every error names the variable, the key, the value and what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import ConfigurationError
from infinitic.transport import InfiniticEnvSource, InfiniticSettings, apply_env_overrides
from infinitic.worker import InfiniticConfig, load_config

BANK = "infinitic_examples.bank_wire.services.InMemoryBank"
FILE = """
transport: {inMemory: {}}
workflowCacheSize: 7
storage:
  redis: {host: 127.0.0.1, keyPrefix: "bank:", password: hunter2}
services:
  - {class: BANK, concurrency: 2}
  - {class: BANK, name: Other, executor: {concurrency: 3}}
""".replace("BANK", BANK)


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "infinitic.yml"
    path.write_text(FILE)
    return path


def test_the_environment_is_a_pydantic_settings_source_above_the_file() -> None:
    sources = InfiniticConfig.settings_customise_sources(
        InfiniticConfig,
        init_settings=_Init({"name": "w"}),  # type: ignore[arg-type]
        env_settings=None,  # type: ignore[arg-type]
        dotenv_settings=None,  # type: ignore[arg-type]
        file_secret_settings=None,  # type: ignore[arg-type]
    )
    assert [type(s).__name__ for s in sources] == ["InfiniticEnvSource", "_Init"]
    assert isinstance(sources[0], InfiniticEnvSource)


class _Init:
    def __init__(self, init_kwargs: dict[str, Any]) -> None:
        self.init_kwargs = init_kwargs


def test_variables_win_over_the_file_whatever_their_spelling(tmp_path: Path) -> None:
    environ = {
        "INFINITIC__WORKFLOW_CACHE_SIZE": "0",  # snake_case for the file's workflowCacheSize
        "infinitic__storage__redis__KEY_PREFIX": "prod:",  # any case: sets keyPrefix
        "INFINITIC__STORAGE__REDIS__PORT": "6380",  # JSON: a number
        "INFINITIC__SERVICES__1__CONCURRENCY": "5",  # flat keys win over executor:
        "INFINITIC__SERVICES__0__RETRY": '{"maximumRetries": 1}',  # JSON: a section
        "INFINITIC__EVENTS": "false",
        "INFINITIC_SERVICES__0__CONCURRENCY": "9",  # not the prefix: ignored
    }
    config = load_config(config_file(tmp_path), environ=environ)
    assert config.workflow_cache_size == 0
    assert config.storage.redis == {
        "host": "127.0.0.1",
        "keyPrefix": "prod:",  # one key, not keyPrefix and key_prefix
        "password": "hunter2",
        "port": 6380,
    }
    assert [s.concurrency for s in config.services] == [2, 5]
    assert config.services[0].retry is not None
    assert config.services[0].retry.maximum_retries == 1
    assert config.events is False
    assert load_config(config_file(tmp_path), environ={}).workflow_cache_size == 7


def test_a_configuration_built_directly_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFINITIC__CHECK_MODE", "strict")
    assert InfiniticConfig(checkMode="none").check_mode == "strict"  # type: ignore[call-arg]
    assert load_config({"checkMode": "none"}, environ={}).check_mode == "none"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"INFINITIC__SERVICES__0__CONCURRENCY": "many"},
            "services.0.concurrency: Input should be a valid integer, unable to parse string "
            "as an integer, got 'many' (from INFINITIC__SERVICES__0__CONCURRENCY='many')",
        ),
        (
            {"INFINITIC__SERVICES__1__CONCURRENCY": "0"},
            "services.1.concurrency: Input should be greater than or equal to 1, got 0 "
            "(from INFINITIC__SERVICES__1__CONCURRENCY='0')",
        ),
        (
            {"INFINITIC__SERVICES__2__CONCURRENCY": "4"},
            "INFINITIC__SERVICES__2__CONCURRENCY='4': services has no item '2': expected an "
            "index from 0 to 1",
        ),
        (
            {"INFINITIC__WORKFLOWS__0__CLASS": "a.B"},
            "INFINITIC__WORKFLOWS__0__CLASS='a.B': workflows has no item '0': expected none "
            "(the list is empty)",
        ),
        (
            {"INFINITIC__STORAGE__COMPRESSION": "lz4"},
            "storage.compression: Input should be 'zstd', 'gzip' or 'none', got 'lz4' "
            "(from INFINITIC__STORAGE__COMPRESSION='lz4')",
        ),
        (
            {"INFINITIC__WORKFLOW_CASH_SIZE": "3"},
            "workflow_cash_size: Extra inputs are not permitted, got 3 "
            "(from INFINITIC__WORKFLOW_CASH_SIZE='3')",
        ),
        (
            {"INFINITIC__LOGS": "{}", "INFINITIC__NAME": "w"},
            "'logs' is not supported: configure Python's logging instead",
        ),
        (
            {"INFINITIC__TRANSPORT__SHUTDOWN_GRACE_PERIOD_SECONDS": "soon"},
            "must be a number of seconds >= 0, got 'soon' "
            "(from INFINITIC__TRANSPORT__SHUTDOWN_GRACE_PERIOD_SECONDS='soon')",
        ),
    ],
)
def test_errors_name_the_variable_the_key_the_value_and_what_was_expected(
    tmp_path: Path, environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigurationError) as error:
        load_config(config_file(tmp_path), environ=environ)
    assert str(error.value).startswith(f"invalid configuration in {tmp_path}")
    assert expected in str(error.value)


def test_a_secret_is_not_shown_in_an_error(tmp_path: Path) -> None:
    environ = {"INFINITIC__STORAGE__REDIS__PASSWORD": "s3cret", "INFINITIC__STORAGE__MYSQL": "{}"}
    with pytest.raises(ConfigurationError, match="name one storage backend") as error:
        load_config(config_file(tmp_path), environ=environ)
    assert "s3cret" not in str(error.value)
    assert "hunter2" not in str(error.value)
    environ = {"INFINITIC__SERVICES__5__TOKEN": "s3cret"}
    with pytest.raises(ConfigurationError, match="services has no item '5'") as error:
        load_config(config_file(tmp_path), environ=environ)
    assert "s3cret" not in str(error.value)


def test_a_client_reads_its_sections_and_ignores_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFINITIC__CLIENT__REQUEST_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("INFINITIC__CLIENT__NAME", "teller")
    monkeypatch.setenv("INFINITIC__SERVICES__7__CONCURRENCY", "x")  # a worker's: ignored
    monkeypatch.setenv("INFINITIC__STORAGE__REDIS__PORT", "none")  # a worker's: ignored
    client = InfiniticClient.from_config({"Transport": {"inMemory": {}}, "services": []})
    assert (client.name, client._core.request_timeout) == ("teller", 2.5)
    monkeypatch.setenv("INFINITIC__CLIENT__REQUEST_TIMEOUT_SECONDS", "0")
    with pytest.raises(ConfigurationError, match="requestTimeoutSeconds must be a positive"):
        InfiniticClient.from_config({"transport": {"inMemory": {}}})
    monkeypatch.setenv("INFINITIC__TRANSPORT__IN_MEMORY__SIZE", "1")
    with pytest.raises(ConfigurationError, match=r"transport\.inMemory takes no option, got size"):
        InfiniticClient.from_config({"transport": {"inMemory": {}}})


def test_apply_env_overrides_sets_any_key() -> None:
    data = {"transport": {"pulsar": {"tenant": "dev"}}, "items": [{"a": 1}]}
    environ = {
        "INFINITIC__TRANSPORT__PULSAR__TENANT": "prod",
        "INFINITIC__ITEMS__0__A": "2",
        "INFINITIC__NEW__KEY": "[1, 2]",
        "OTHER": "x",
    }
    assert apply_env_overrides(data, environ=environ) == {
        "transport": {"pulsar": {"tenant": "prod"}},
        "items": [{"a": 2}],
        "new": {"key": [1, 2]},
    }
    assert data["items"] == [{"a": 1}]  # a copy
    with pytest.raises(ConfigurationError, match="INFINITIC__ITEMS__1__A='2': items has no item"):
        apply_env_overrides(data, environ={"INFINITIC__ITEMS__1__A": "2"})


class _Settings(InfiniticSettings):
    level: int = 0


def test_any_settings_model_reads_the_variables_through_the_same_source() -> None:
    assert _Settings.read({"level": 1}, environ={"INFINITIC__LEVEL": "3"}).level == 3
    with pytest.raises(ConfigurationError, match=r"level: .* got 'high' \(from INFINITIC__LEVEL"):
        _Settings.read({}, environ={"INFINITIC__LEVEL": "high"}, where=" in here.yml")
