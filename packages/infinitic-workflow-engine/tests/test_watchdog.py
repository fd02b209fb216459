"""The watchdog stops workflow code past its timeout and nothing escapes the guarded call."""

from __future__ import annotations

import sys
import time

import pytest

from infinitic.workflow_engine._watchdog import GuardedRun, StepInterrupted, Watchdog


def _spin(seconds: float) -> str:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return "done"


def _burn(cpu_seconds: float) -> str:
    """Use this much CPU time (a loaded machine may take longer)."""
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        pass
    return "done"


def test_code_past_its_timeout_is_stopped_where_it_is() -> None:
    watchdog = Watchdog(tick=0.005, idle_tick=0.005)
    guarded = GuardedRun("W", "id", "m", timeout=0.05, blocking_threshold=None)
    started = time.perf_counter()
    with pytest.raises(StepInterrupted):
        watchdog.run(guarded, lambda: _spin(10))
    assert time.perf_counter() - started < 5
    assert guarded.timed_out
    assert "test_watchdog.py:" in guarded.where
    assert "in _spin" in guarded.where


def test_an_interruption_racing_the_end_never_escapes() -> None:
    # Runs that end right about when their timeout passes: each one either returns or raises
    # StepInterrupted from run(); an interruption raised while it was leaving never surfaces
    # later (it would be raised in the code below, outside run()).
    watchdog = Watchdog(tick=0.001, idle_tick=0.001)
    outcomes = {"done": 0, "stopped": 0}
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        guarded = GuardedRun("W", "id", "m", timeout=0.002, blocking_threshold=None)
        try:
            outcomes[watchdog.run(guarded, lambda: _spin(0.002))] += 1
        except StepInterrupted:
            outcomes["stopped"] += 1
        _spin(0.001)  # a stray interruption would be raised here and fail the test
    assert outcomes["done"] > 0
    assert outcomes["stopped"] > 0
    # nothing is left pending either: a thread being profiled (as by the strict check) loops
    # forever at its next function entry when CPython's async-exception signal is left set
    sys.setprofile(lambda *_: None)
    try:
        assert _spin(0.001) == "done"
    finally:
        sys.setprofile(None)


def test_a_warning_names_the_blocking_place(caplog: pytest.LogCaptureFixture) -> None:
    watchdog = Watchdog(tick=0.005, idle_tick=0.005)
    guarded = GuardedRun("W", "wid", "m", timeout=None, blocking_threshold=0.02)
    with caplog.at_level("WARNING", logger="infinitic.workflow_engine"):
        assert watchdog.run(guarded, lambda: _burn(0.1)) == "done"
    assert guarded.blocked_for >= 0.02
    (record,) = [r for r in caplog.records if "without yielding" in r.getMessage()]
    assert "workflow W (id wid), method m" in record.getMessage()
    assert "in _burn" in record.getMessage()


def test_a_garbage_collection_inside_a_step_is_not_blocking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A collection of the oldest generation walks every object of the process: hundreds of
    # milliseconds inside whatever step triggers it. It is not the workflow code's doing.
    import gc

    from infinitic.workflow_engine import _watchdog

    watchdog = Watchdog(tick=0.002, idle_tick=0.002)
    heap = [[i] for i in range(3_000_000)]  # objects the collector walks
    threshold = 0.1
    guarded = GuardedRun("W", "id", "m", timeout=None, blocking_threshold=threshold)
    took = 0.0

    def step() -> str:
        nonlocal took
        before = _watchdog._collector.now()
        gc.collect()
        took = _watchdog._collector.now() - before
        _burn(0.03)  # the code's own time, under the threshold; the watchdog looks meanwhile
        return "done"

    assert watchdog.run(guarded, step) == "done"
    assert took > threshold, f"the collection took {took:.3f} s: too short to tell"
    assert guarded.blocked_for == 0.0
    assert not [r for r in caplog.records if "without yielding" in r.getMessage()]
    del heap
