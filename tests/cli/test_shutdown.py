"""Stopping ``infinitic worker``: SIGTERM stops receiving and lets in-flight work finish for the
grace period, then abandons it (the broker delivers it again: nothing is lost); a second signal
stops at once. Worker processes on pulsar-lite and Redis."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import pytest

from .support import WorkerProcess, free_port, infinitic, redis_url

pytestmark = [pytest.mark.pulsar, pytest.mark.redis, pytest.mark.timeout(240)]


def _config(tmp_path: Path, grace: str) -> Path:
    config = tmp_path / "infinitic.yml"
    config.write_text(
        f"""
{grace}
transport:
  pulsarLite: {{port: {free_port()}, dataDir: {tmp_path / "pulsar"}}}
storage:
  redis: {{url: "{redis_url()}", keyPrefix: "shutdown-{uuid.uuid4().hex[:8]}:"}}
services:
  - {{name: Sleeper, class: cli_flows.SleeperImpl, interface: cli_flows.Sleeper}}
workflows:
  - {{name: SleepWorkflow, class: cli_flows.SleepWorkflow}}
"""
    )
    return config


def _start_sleeping(tmp_path: Path, config: Path, env: dict[str, str]) -> tuple[WorkerProcess, str]:
    worker = WorkerProcess(config, tmp_path / "worker-1.log", env)
    worker.wait_for("started")
    started = infinitic("workflow", "start", "-c", str(config), "SleepWorkflow", "run", "1")
    assert started.returncode == 0, started.stderr
    marker = Path(env["CLI_TEST_MARKER"])
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, worker.text()
        time.sleep(0.05)
    return worker, started.stdout.strip()


def test_a_task_longer_than_the_grace_period_is_abandoned_then_run_again(tmp_path: Path) -> None:
    # Infinitic 0.18's key, beside the transport's name
    config = _config(tmp_path, "")
    config.write_text(
        config.read_text().replace("transport:\n", "transport:\n  shutdownGracePeriodSeconds: 2\n")
    )
    marker = tmp_path / "marker"
    env = {"CLI_TEST_SLEEP": "600", "CLI_TEST_MARKER": str(marker)}
    worker, workflow_id = _start_sleeping(tmp_path, config, env)
    began = time.monotonic()
    assert worker.stop(timeout=60) == 0, worker.text()
    took = time.monotonic() - began
    log = worker.text()
    assert "1 in-flight (task-executor:Sleeper: 1)" in log
    assert "abandoning 1 in-flight (task-executor:Sleeper: 1) after 2 s" in log
    assert 2 <= took < 20, log

    # The abandoned task comes back to the next worker, which finishes the workflow.
    second = WorkerProcess(config, tmp_path / "worker-2.log", {**env, "CLI_TEST_SLEEP": "0"})
    try:
        second.wait_for("started")
        deadline = time.monotonic() + 60
        while True:
            status = infinitic("workflow", "status", "-c", str(config), "SleepWorkflow",
                               "--id", workflow_id, "--json")  # fmt: skip
            assert status.returncode == 0, status.stderr
            if json.loads(status.stdout)[0]["status"] == "unknown":  # completed
                break
            assert time.monotonic() < deadline, second.text()
            time.sleep(0.2)
    finally:
        assert second.stop() == 0, second.text()
    assert marker.read_text().count("started") == 2


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    config = _config(tmp_path, "shutdownGracePeriodInSeconds: 120")  # the older key
    env = {"CLI_TEST_SLEEP": "600", "CLI_TEST_MARKER": str(tmp_path / "marker")}
    worker, _ = _start_sleeping(tmp_path, config, env)
    worker.signal(signal.SIGINT)
    worker.wait_for("stopping: 1 in-flight")
    began = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.stop(timeout=30) == 0, worker.text()
    assert time.monotonic() - began < 15, worker.text()
    log = worker.text()
    assert "SIGTERM received again: stopping now" in log
    assert "abandoning 1 in-flight (task-executor:Sleeper: 1) now" in log
