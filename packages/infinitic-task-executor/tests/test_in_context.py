"""run_in_context: a coroutine driven by the awaiting task, each step inside its own context."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from infinitic.task_executor._in_context import run_in_context

_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outside")


async def test_the_result_and_the_values_the_code_sets_stay_in_its_context() -> None:
    seen: list[str] = []

    async def code() -> str:
        seen.append(_VAR.get())
        _VAR.set("inside")
        await asyncio.sleep(0)  # a bare yield
        await asyncio.sleep(0.001)  # a future
        seen.append(_VAR.get())  # still its own context after each step
        return "done"

    context = contextvars.copy_context()
    context.run(_VAR.set, "given")
    assert await run_in_context(code(), context) == "done"
    assert seen == ["given", "inside"]
    assert _VAR.get() == "outside"  # the awaiting task's context is untouched
    assert context[_VAR] == "inside"


async def test_what_the_code_starts_copies_its_context() -> None:
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def child() -> str:
        return _VAR.get()

    async def code() -> str:
        _VAR.set("inside")
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: found.set_result(_VAR.get()))
        return await loop.create_task(child())

    assert await run_in_context(code(), contextvars.copy_context()) == "inside"
    assert await found == "inside"
    assert _VAR.get() == "outside"


async def test_an_exception_of_the_code_reaches_the_awaiting_task() -> None:
    async def code() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await run_in_context(code(), contextvars.copy_context())


async def test_an_exception_the_code_catches_lets_it_go_on() -> None:
    async def failing() -> None:
        await asyncio.sleep(0)
        raise KeyError("k")

    async def code() -> str:
        try:
            await asyncio.get_running_loop().create_task(failing())
        except KeyError:
            _VAR.set("recovered")
        await asyncio.sleep(0)
        return _VAR.get()

    assert await run_in_context(code(), contextvars.copy_context()) == "recovered"


async def test_cancelling_the_awaiting_task_cancels_the_code_where_it_waits() -> None:
    started = asyncio.Event()
    cleaned: list[str] = []

    async def code() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cleaned.append(_VAR.get())
            raise

    context = contextvars.copy_context()
    context.run(_VAR.set, "given")

    async def awaiting() -> None:
        await run_in_context(code(), context)

    task = asyncio.create_task(awaiting())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["given"]  # the code saw the cancellation, inside its context


async def test_a_timeout_around_it_stops_the_code() -> None:
    stopped: list[bool] = []

    async def code() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            stopped.append(True)

    scope = asyncio.timeout(0.01)
    with pytest.raises(TimeoutError):
        async with scope:
            await run_in_context(code(), contextvars.copy_context())
    assert scope.expired()
    assert stopped == [True]
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_the_code_closed_unfinished_is_closed() -> None:
    closed: list[bool] = []

    async def code() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            closed.append(True)

    runner = run_in_context(code(), contextvars.copy_context())
    assert next(runner) is not None  # the future the code waits for
    runner.close()
    assert closed == [True]
