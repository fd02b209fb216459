"""A worker process on pulsar-lite as users run it (``infinitic worker --log-format json``
with ``metrics:``): a quiet start (fewer than 20 lines at INFO, the Pulsar C++ client's
included), every line a JSON object, and the metrics endpoint scraped over HTTP after wires."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .support import INFINITIC, free_port, infinitic

pytestmark = [pytest.mark.pulsar, pytest.mark.timeout(180)]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        body = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(log: Path, needle: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log.read_text():
        if process.poll() is not None:
            raise AssertionError(f"the worker exited ({process.returncode}):\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not logged in {timeout} s:\n{log.read_text()}")
        time.sleep(0.05)


def test_a_quiet_start_json_logs_and_metrics_over_http(tmp_path: Path) -> None:
    metrics_port = free_port()
    config = tmp_path / "infinitic.yml"
    config.write_text(
        f"""
transport:
  pulsarLite: {{port: {free_port()}, dataDir: {tmp_path / "pulsar"}}}
storage:
  inMemory:
services:
  - {{name: Greeter, class: cli_flows.GreeterImpl, interface: cli_flows.Greeter}}
workflows:
  - {{name: HelloWorkflow, class: cli_flows.HelloWorkflow}}
metrics: {{port: {metrics_port}}}
"""
    )
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*INFINITIC, "worker", "-c", str(config), "--log-format", "json"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(log, "started: services", process, 60)
        at_start = [json.loads(line) for line in log.read_text().splitlines()]
        assert len(at_start) < 20, at_start
        assert not [x for x in at_start if x["logger"].startswith("infinitic.transport_pulsar")]
        assert any(x["message"] == f"metrics at http://127.0.0.1:{metrics_port}/metrics"
                   for x in at_start)  # fmt: skip

        for name in ("ann", "bob"):
            done = infinitic(
                "workflow", "start", "-c", str(config), "HelloWorkflow", "hello", name,
                "--wait", "--timeout", "30", "--json",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["result"] == f"hello {name}"

        deadline = time.monotonic() + 20
        while True:  # the last store of an instance comes after its result (send before save)
            samples = scrape(metrics_port)
            ended = value(samples, "infinitic_workflow_completions_total", workflow="HelloWorkflow")
            if ended == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert ended == 2
        assert value(samples, "infinitic_workflow_starts_total", workflow="HelloWorkflow") == 2
        timed = {"service": "Greeter", "method": "greet"}
        assert value(samples, "infinitic_task_duration_seconds_count", **timed) == 2
        cmd = {"component": "workflow_state_engine", "topic": "workflow-cmd:HelloWorkflow"}
        handled = value(samples, "infinitic_messages_handled_total", **cmd)
        later = value(samples, "infinitic_message_retries_total", **cmd, reason="retry_later")
        assert handled - later == 2
        assert value(samples, "infinitic_storage_operation_seconds_count",
                     backend="inmemory", operation="put") >= 2  # fmt: skip
    finally:
        process.terminate()
        code = process.wait(60)
    assert code == 0, log.read_text()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[-1]["message"] == "worker worker closed"
    assert not [x for x in lines if x["level"] in ("DEBUG", "ERROR")]
