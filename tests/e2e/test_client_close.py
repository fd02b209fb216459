"""Closing a client with calls still waiting: awaiting them raises, forgetting them is quiet."""

from __future__ import annotations

import gc
import logging

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import InfiniticError
from infinitic.transport import InMemoryTransport
from infinitic.workflows import Workflow


class Nobody(Workflow):  # no worker runs it: its calls wait
    async def run(self) -> int:
        return 1


async def test_waiting_calls_fail_at_close_without_unretrieved_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    transport = InMemoryTransport()
    async with transport:
        client = InfiniticClient(transport=transport)
        awaited = await client.dispatch(client.new_workflow(Nobody).run)
        forgotten = await client.dispatch(client.new_workflow(Nobody).run)
        waiting = awaited.result()
        forgotten.result().close()  # a result nobody will await
        await client.close()
        with pytest.raises(InfiniticError, match="was closed"):
            await waiting
        del forgotten
        gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
