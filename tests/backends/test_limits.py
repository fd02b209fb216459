"""Limits on the real backends (issue 15), the short forms of ``tools/limits.py``: arguments of
1 to 20 MB on pulsar-lite; a workflow state past MySQL's value limit fails its waiters at once
with an error naming the backend, the key and the limit (it was retried for 45 s at each of its
deliveries, then dead-lettered while the client waited forever); the same state stored whole on
Redis and PostgreSQL; child workflows 50 levels deep on every stack."""

from __future__ import annotations

import pytest

from infinitic.storage import InMemoryStorage
from limits import argument_sizes, growing_state, recursion

from .conftest import Stack, pulsar_lite_transport
from .support import open_backend


@pytest.mark.pulsar
async def test_arguments_on_pulsar_lite(pulsar_lite_url: str) -> None:
    transport = pulsar_lite_transport(pulsar_lite_url)
    await transport.start()
    try:
        outcomes = await argument_sizes(transport, InMemoryStorage(), [1, 4, 6, 20], 30)
    finally:
        await transport.close()
    assert [o.ok for o in outcomes] == [True, True, False, False], outcomes
    for refused in outcomes[2:]:
        assert refused.detail.startswith("MessageTooLargeError: message DispatchWorkflow for ")
        assert "Limits.take" in refused.detail
        assert "5,177,344" in refused.detail


@pytest.mark.mysql
async def test_a_state_past_mysql_limit_fails_its_waiters_at_once() -> None:
    """Results of 3 MB kept whole in the state (no archive): the third step makes a state of
    9 MB, over the 8 MB a MariaDB of max_allowed_packet 16 MB takes (values travel as hex)."""
    from infinitic.transport import InMemoryTransport

    backend = await open_backend("mysql")
    transport = InMemoryTransport()
    await transport.start()
    try:
        outcome = await growing_state(transport, backend.storage, 6, 3, 40, history_chunk_steps=0)
    finally:
        await transport.close()
        await backend.close()
    assert not outcome.ok, outcome
    assert outcome.detail.startswith("WorkflowFailedError: workflow Limits.grow"), outcome
    assert "MySQL cannot store key 'workflow-state:Limits:" in outcome.detail
    assert "max_allowed_packet" in outcome.detail
    assert outcome.seconds < 30  # retried for 45 s per delivery before


@pytest.mark.parametrize(
    "database",
    [
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
async def test_a_state_of_megabytes_on_redis_and_postgres(database: str) -> None:
    from infinitic.transport import InMemoryTransport

    backend = await open_backend(database)
    transport = InMemoryTransport()
    await transport.start()
    try:
        outcome = await growing_state(transport, backend.storage, 4, 3, 60, history_chunk_steps=0)
    finally:
        await transport.close()
        await backend.close()
    assert outcome.ok, outcome
    assert outcome.detail == str(4 * 3 * 1024 * 1024)


async def test_child_workflows_fifty_levels_deep(stack: Stack) -> None:
    outcome = await recursion(stack.transport, stack.storage, 50, 90, **stack.options)
    assert outcome.ok, outcome
    assert outcome.detail == "50"
