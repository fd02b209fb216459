"""Limits on the in-memory transport and storage (issue 15), the short forms of
``tools/limits.py`` (``make limits`` runs the heavy ones): arguments of 1 to 20 MB, 10,000
properties, child workflows 50 levels deep, 10,000 commands in one step and 200 tasks in
batches, a state that grows by megabytes. Each must end (a result or a clear error) within its
deadline: a hang fails the test."""

from __future__ import annotations

import pytest

from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from limits import (
    argument_sizes,
    growing_state,
    many_commands,
    many_properties,
    recursion,
)

LIMIT = "5,177,344"  # the default max_message_bytes: Pulsar's 5 MiB less room for properties


def options(workflow_cache_size: int) -> dict[str, object]:
    """Workflow tasks through the broker with the cache, inline in the engine without it."""
    return {
        "workflow_cache_size": workflow_cache_size,
        "inline_workflow_tasks": not workflow_cache_size,
    }


async def test_arguments_up_to_the_message_limit_pass_larger_ones_are_refused() -> None:
    outcomes = await argument_sizes(InMemoryTransport(), InMemoryStorage(), [1, 4, 6, 20], 30)
    assert [o.ok for o in outcomes] == [True, True, False, False], outcomes
    assert outcomes[0].detail == str(1024 * 1024)
    for refused in outcomes[2:]:
        assert refused.detail.startswith("MessageTooLargeError: message DispatchWorkflow for ")
        assert "Limits.take" in refused.detail
        assert LIMIT in refused.detail
        assert refused.seconds < 5


async def test_ten_thousand_properties(workflow_cache_size: int) -> None:
    storage, transport = InMemoryStorage(), InMemoryTransport()
    outcome = await many_properties(transport, storage, 10_000, 30, **options(workflow_cache_size))
    assert outcome.ok, outcome
    assert outcome.detail == str(sum(range(10_000)))


async def test_child_workflows_fifty_levels_deep(workflow_cache_size: int) -> None:
    outcome = await recursion(
        InMemoryTransport(), InMemoryStorage(), 50, 60, **options(workflow_cache_size)
    )
    assert outcome.ok, outcome
    assert outcome.detail == "50"


async def test_ten_thousand_inline_commands_in_one_step(workflow_cache_size: int) -> None:
    outcome = await many_commands(
        InMemoryTransport(),
        InMemoryStorage(),
        "inline",
        10_000,
        0,
        60,
        **options(workflow_cache_size),
    )
    assert outcome.ok, outcome
    assert outcome.detail == str(sum(range(10_000)))


async def test_two_hundred_tasks_in_batches(workflow_cache_size: int) -> None:
    """A step costs in proportion to the commands in flight and, without the cache, to the
    history replayed: 10,000 tasks take minutes (the README's Limits section)."""
    outcome = await many_commands(
        InMemoryTransport(), InMemoryStorage(), "tasks", 200, 50, 90, **options(workflow_cache_size)
    )
    assert outcome.ok, outcome
    assert outcome.detail == str(sum(range(200)))


@pytest.mark.parametrize("chunk", [0, 2])
async def test_a_state_growing_by_megabytes(chunk: int) -> None:
    """The in-memory storage has no value limit: 4 results of 2 MB stay in the history (whole
    in the state with chunk 0, in archived chunks of 2 steps otherwise)."""
    outcome = await growing_state(InMemoryTransport(), InMemoryStorage(), 4, 2, 60, chunk)
    assert outcome.ok, outcome
    assert outcome.detail == str(4 * 2 * 1024 * 1024)
