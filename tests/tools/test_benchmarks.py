"""The benchmarks of ``make bench`` in their shortest form, so they cannot rot unseen (a broken
benchmark hangs or fails only when someone measures with it). What they measure is not checked
here: speed is for ``make bench`` on a quiet machine, never for a timed test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.cli.support import redis_url as reachable_redis_url

TOOLS = Path(__file__).resolve().parents[2] / "tools"

pytestmark = [pytest.mark.pulsar, pytest.mark.timeout(300)]


def _run(*args: str, timeout: float = 240) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=TOOLS.parent
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout


@pytest.mark.redis
def test_bench_path_runs_the_in_memory_and_redis_stacks() -> None:
    redis_url = reachable_redis_url()  # skips (fails under CI) when Redis does not answer
    out = _run(
        str(TOOLS / "bench_path.py"),
        "--stacks=memory,redis",
        "--workers=1",
        "--wires=60",
        "--memory-wires=60",
        "--sequential=3",
        "--warmup=5",
        "--json",
        f"--redis-url={redis_url}",
    )
    runs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["stack"] for r in runs] == ["memory", "redis"]
    assert "bench_path: host speed: " in out  # before and after the runs
    for run in runs:
        assert run["errors"] == {"warmup": 0, "concurrent": 0, "sequential": 0}, run
        assert run["workflows_per_s"] > 0
        assert run["host_speed_ms"] > 0  # the host's speed when the run started
        assert run["log_errors"] == 0, run["log_top"]
        # 8 per wire in memory; 5 on a broker, where a worker running everything hands its
        # services' results to its state engine; and event batches
        least = 8 if run["stack"] == "memory" else 5
        assert least <= run["messages_per_wf"] < least + 4, run["messages_per_wf"]


def test_bench_timers_parks_and_measures_idle_timers() -> None:
    out = _run(str(TOOLS / "bench_timers.py"), "--timers=300", "--idle=2")
    idle = [line for line in out.splitlines() if line.startswith("idle, 300 timers")]
    assert idle, out
    assert "0 republishes" in idle[0], idle[0]
