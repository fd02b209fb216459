"""The infinitic command against a worker process on pulsar-lite and Redis: start a workflow
from the command line, read its status, its ids by tag, complete its timers."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from .support import WorkerProcess, free_port, infinitic, redis_url

pytestmark = [pytest.mark.pulsar, pytest.mark.redis, pytest.mark.timeout(180)]


def test_start_status_ids_and_timers_against_a_running_worker(tmp_path: Path) -> None:
    prefix = f"cli-{uuid.uuid4().hex[:8]}:"
    config = tmp_path / "infinitic.yml"
    config.write_text(
        f"""
transport:
  pulsarLite: {{port: {free_port()}, dataDir: {tmp_path / "pulsar"}}}
storage:
  redis: {{url: "{redis_url()}", keyPrefix: "{prefix}"}}
services:
  - {{name: Greeter, class: cli_flows.GreeterImpl, interface: cli_flows.Greeter}}
workflows:
  - {{name: HelloWorkflow, class: cli_flows.HelloWorkflow}}
"""
    )
    worker = WorkerProcess(config, tmp_path / "worker.log")
    try:
        worker.wait_for("started")
        done = infinitic(
            "workflow", "start", "-c", str(config), "HelloWorkflow", "hello", "bob",
            "--wait", "--timeout", "30", "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["result"] == "hello bob"

        started = infinitic(
            "workflow", "start", "-c", str(config), "HelloWorkflow", "sleepy", "3600",
            "--tag", "cli-test",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        workflow_id = started.stdout.strip()

        status = infinitic("workflow", "status", "-c", str(config), "HelloWorkflow",
                           "--id", workflow_id, "--json")  # fmt: skip
        assert status.returncode == 0, status.stderr
        [summary] = json.loads(status.stdout)
        assert summary["id"] == workflow_id
        assert summary["status"] == "running"
        assert summary["methods"][0]["method"] == "sleepy"

        ids = infinitic("workflow", "ids", "-c", str(config), "HelloWorkflow",
                        "--tag", "cli-test", "--json")  # fmt: skip
        assert ids.returncode == 0, ids.stderr
        assert json.loads(ids.stdout) == [workflow_id]

        timers = infinitic("workflow", "complete-timers", "-c", str(config), "HelloWorkflow",
                           "--tag", "cli-test")  # fmt: skip
        assert timers.returncode == 0, timers.stderr
        for _ in range(100):  # the instance finishes: its state is gone
            status = infinitic("workflow", "status", "-c", str(config), "HelloWorkflow",
                               "--id", workflow_id, "--json")  # fmt: skip
            if json.loads(status.stdout)[0]["status"] == "unknown":
                break
        else:
            raise AssertionError(f"still running after its timers completed: {status.stdout}")
    finally:
        assert worker.stop() == 0, worker.text()
