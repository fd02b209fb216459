"""An instance's properties on its page: a state does not store them, so the dashboard rebuilds
them by replaying the history against the workflow's code (issue 16), when given the class."""

from __future__ import annotations

import asyncio
import html
import logging
import re

import httpx
import pytest
from tests.dashboard.support import DashOrder

from infinitic.client import InfiniticClient
from infinitic.common import read_workflow_state
from infinitic.dashboard import create_app
from infinitic.dashboard.cli import workflow_classes
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticConfig, InfiniticWorker
from infinitic.worker.testing import replay_properties
from infinitic.workflows import Channel, Workflow


class Tally(Workflow):
    """Keeps what it was sent, until told to stop."""

    numbers = Channel[int]()

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.label = "tally"
        self._hidden = "not a property"

    async def run(self, until: int) -> list[int]:
        numbers = self.numbers.receive()  # every signal from now on, one per await
        while sum(self.seen) < until:
            self.seen.append(await numbers)
        return self.seen


async def test_an_instance_page_shows_its_properties_rebuilt_from_its_history() -> None:
    transport, storage = InMemoryTransport(), InMemoryStorage()
    worker = InfiniticWorker(transport=transport, storage=storage)
    worker.add_workflow(Tally)
    async with worker, InfiniticClient(transport=transport) as client:
        deferred = await client.dispatch(client.new_workflow(Tally).run, 100)
        running = client.get_workflow_by_id(Tally, deferred.id)
        await running.numbers.send(3)  # type: ignore[attr-defined]
        await running.numbers.send(4)  # type: ignore[attr-defined]
        for _ in range(3000):  # both signals taken (30 s at most)
            state = await read_workflow_state(storage.key_value, "Tally", deferred.id)
            if state is not None and replay_properties(Tally, state)["seen"] == [3, 4]:
                break
            await asyncio.sleep(0.01)
        assert state is not None
        assert replay_properties(Tally, state) == {"seen": [3, 4], "label": "tally"}
        page = f"/workflows/Tally/instances/{deferred.id}"
        app = create_app(client, storage, ["Tally"], workflow_classes=[Tally])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://x"
        ) as web:
            text = html.unescape((await web.get(page)).text)
        rows = dict(re.findall(r"<tr><td>(\w+)</td><td><code>([^<]*)</code></td></tr>", text))
        assert rows["seen"] == "[3, 4]"
        assert rows["label"] == '"tally"'
        assert "_hidden" not in text
        bare = create_app(client, storage, ["Tally"])  # without the class: said so
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=bare), base_url="http://x"
        ) as web:
            text = html.unescape((await web.get(page)).text)
        assert "give the dashboard the workflow's class to see them" in text
        await running.numbers.send(93)  # type: ignore[attr-defined]
        assert await deferred.result() == [3, 4, 93]


def test_the_command_imports_the_configured_workflow_classes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = InfiniticConfig.model_validate(
        {
            "transport": {"inMemory": {}},
            "workflows": [
                {"name": "DashOrder", "class": "tests.dashboard.support.DashOrder"},
                {"name": "Gone", "class": "tests.dashboard.no_such_module.Gone"},
            ],
        }
    )
    with caplog.at_level(logging.WARNING, logger="infinitic.dashboard"):
        assert workflow_classes(config) == [DashOrder]
    assert "no properties for Gone: cannot import tests.dashboard.no_such_module.Gone" in (
        caplog.text
    )
