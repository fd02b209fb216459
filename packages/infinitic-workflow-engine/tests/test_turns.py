"""One handler at a time per workflow instance (the state engine's turns)."""

from __future__ import annotations

import asyncio

from infinitic.workflow_engine._engine import _Turns


async def _hold(turns: _Turns, key: str, log: list[str], name: str, gate: asyncio.Event) -> None:
    await turns.take(key)
    try:
        log.append(f"{name} in")
        await gate.wait()
        log.append(f"{name} out")
    finally:
        turns.give_up(key)


async def test_handlers_of_one_key_take_turns_in_arrival_order() -> None:
    turns, log, gate = _Turns(), [], asyncio.Event()
    tasks = [asyncio.create_task(_hold(turns, "wf", log, n, gate)) for n in "abc"]
    other = asyncio.create_task(_hold(turns, "other", log, "x", gate))
    await asyncio.sleep(0.01)
    assert log == ["a in", "x in"]  # another key does not wait
    gate.set()
    await asyncio.gather(*tasks, other)
    assert [e for e in log if e != "x in" and e != "x out"] == [
        "a in",
        "a out",
        "b in",
        "b out",
        "c in",
        "c out",
    ]
    assert "wf" not in turns
    assert "other" not in turns


async def test_a_waiter_cancelled_before_its_turn_is_skipped() -> None:
    turns, log, gate = _Turns(), [], asyncio.Event()
    first = asyncio.create_task(_hold(turns, "wf", log, "a", gate))
    second = asyncio.create_task(_hold(turns, "wf", log, "b", gate))
    third = asyncio.create_task(_hold(turns, "wf", log, "c", gate))
    await asyncio.sleep(0.01)
    second.cancel()
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, third)
    assert second.cancelled()
    assert log == ["a in", "a out", "c in", "c out"]
    assert "wf" not in turns


async def test_a_waiter_cancelled_once_handed_its_turn_passes_it_on() -> None:
    turns, log, gate = _Turns(), [], asyncio.Event()
    await turns.take("wf")  # this test holds the first turn
    second = asyncio.create_task(_hold(turns, "wf", log, "b", gate))
    third = asyncio.create_task(_hold(turns, "wf", log, "c", gate))
    await asyncio.sleep(0.01)
    turns.give_up("wf")  # hands the turn to b, which is cancelled before it runs
    second.cancel()
    gate.set()
    await asyncio.gather(third)
    assert second.cancelled()
    assert log == ["c in", "c out"]
    assert "wf" not in turns
