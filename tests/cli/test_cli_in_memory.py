"""The infinitic command end to end on the in-memory transport: the command runs the
configuration's workers in its own process (nobody else can reach an in-memory transport)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from infinitic.worker.cli import cli

IN_MEMORY = """
transport: {inMemory: {}}
services:
  - {name: Greeter, class: cli_flows.GreeterImpl, interface: cli_flows.Greeter}
workflows:
  - {name: HelloWorkflow, class: cli_flows.HelloWorkflow}
"""


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "infinitic.yml"
    path.write_text(IN_MEMORY)
    return str(path)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_start_and_wait_prints_the_result(config: str) -> None:
    code, out, _ = run("workflow", "start", "-c", config, "HelloWorkflow", "hello", "bob", "--wait")
    assert code == 0
    workflow_id, result = out.splitlines()
    assert workflow_id
    assert json.loads(result) == "hello bob"


def test_start_json_by_dotted_path(config: str) -> None:
    code, out, _ = run(
        "workflow", "start", "-c", config, "cli_flows.HelloWorkflow", "hello", '"ann"',
        "--wait", "--json",
    )  # fmt: skip
    assert code == 0
    outcome = json.loads(out)
    assert outcome["workflow"] == "HelloWorkflow"
    assert outcome["result"] == "hello ann"


def test_a_failed_workflow_exits_with_1(config: str) -> None:
    code, out, _err = run(
        "workflow", "start", "-c", config, "HelloWorkflow", "fail", "--wait", "--json"
    )
    assert code == 1
    assert "as asked" in json.loads(out)["error"]


def test_operations_by_id_report_json(config: str) -> None:
    for verb in ("cancel", "retry-task", "retry-tasks", "complete-timers"):
        code, out, _ = run("workflow", verb, "-c", config, "HelloWorkflow", "--id", "a", "--json")
        assert code == 0, verb
        assert json.loads(out) == {
            "workflow": "HelloWorkflow", "operation": verb, "ids": ["a"], "failed": {}
        }  # fmt: skip


def test_operations_by_tag_and_ids_from_a_file(config: str, tmp_path: Path) -> None:
    code, out, _ = run("workflow", "cancel", "-c", config, "HelloWorkflow", "--tag", "t")
    assert code == 0
    assert "tagged 't'" in out
    ids = tmp_path / "ids.txt"
    ids.write_text("x\ny\n\nx\n")
    code, out, _ = run(
        "workflow", "cancel", "-c", config, "HelloWorkflow", "--ids-file", str(ids), "--json"
    )
    assert code == 0
    assert json.loads(out)["ids"] == ["x", "y"]


def test_ids_of_a_tag_and_status_of_unknown_instances(config: str) -> None:
    code, out, _ = run("workflow", "ids", "-c", config, "HelloWorkflow", "--tag", "none", "--json")
    assert code == 0
    assert json.loads(out) == []
    code, out, _ = run("workflow", "status", "-c", config, "HelloWorkflow", "--id", "z", "--json")
    assert code == 0
    assert json.loads(out) == [{"workflow": "HelloWorkflow", "id": "z", "status": "unknown"}]


def test_complete_delegated(config: str) -> None:
    code, out, _ = run("task", "complete-delegated", "-c", config, "Greeter", "t1", "42", "--json")
    assert code == 0
    assert json.loads(out)["completed"] is True


def test_usage_and_configuration_errors_exit_with_2(config: str, tmp_path: Path) -> None:
    assert run("workflow", "cancel", "-c", config, "HelloWorkflow")[0] == 2  # no target
    code, _, err = run("workflow", "start", "-c", config, "Unknown", "m")
    assert code == 2
    assert "dotted path" in err
    code, _, err = run("workflow", "start", "-c", config, "cli_flows.NotAWorkflow", "hello")
    assert code == 2
    assert "not a Workflow subclass" in err
    code, _, err = run("workflow", "cancel", "-c", str(tmp_path / "no.yml"), "W", "--id", "a")
    assert code == 2
    assert "no.yml" in err
    client_only = tmp_path / "client.yml"
    client_only.write_text("client: {name: c}\n")
    code, _, err = run("workflow", "cancel", "-c", str(client_only), "W", "--id", "a")
    assert code == 2
    assert "transport" in err
    assert run("workflow", "nope")[0] == 2


def test_config_show_hides_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "infinitic.yml"
    path.write_text(
        "transport:\n  pulsar: {brokerServiceUrl: 'pulsar://localhost:6650',"
        " authentication: {token: abc}}\n"
        "storage:\n  redis: {url: 'redis://u:hunter2@db:6379/0', password: hunter2}\n"
    )
    monkeypatch.setenv("INFINITIC__STORAGE__REDIS__HOST", "db2")
    code, out, _ = run("config", "show", "-c", str(path), "--json")
    assert code == 0
    shown = json.loads(out)
    assert "hunter2" not in out
    assert "abc" not in out
    assert shown["storage"]["redis"]["host"] == "db2"
    assert shown["storage"]["redis"]["url"] == "redis://u:**********@db:6379/0"
    code, out, _ = run("config", "show", "-c", str(path))
    assert code == 0
    assert "brokerServiceUrl" in out
    assert "hunter2" not in out


def test_version_and_help() -> None:
    code, out, _ = run("--version")
    assert code == 0
    assert "infinitic-worker " in out
    assert "infinitic-client " in out
    for args in ([], ["workflow"], ["workflow", "start"], ["task"], ["config", "show"], ["worker"]):
        code, out, _ = run(*args, "--help")
        assert code == 0, args
        assert "Usage:" in out
