"""The dashboard served by a worker (issue 16): ``host_on(worker)`` or ``dashboard:`` in its
configuration; it listens once the worker runs, shows the worker's workflows with its own
timeline, refuses another interface without a token, and stops with the worker."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from tests.dashboard.support import Cards, DashOrder, FlakyCards

from infinitic.dashboard import host_on
from infinitic.exceptions import ConfigurationError
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker


async def test_a_worker_serves_the_dashboard_of_its_workflows() -> None:
    worker = InfiniticWorker(transport=InMemoryTransport(), storage=InMemoryStorage())
    worker.add_service(FlakyCards(), interface=Cards)
    worker.add_workflow(DashOrder)
    hosted = host_on(worker, port=0, workflow_classes=[DashOrder])
    assert hosted.url is None  # not before the worker runs
    async with worker:
        url = hosted.url
        assert url is not None
        order = worker.client.new_workflow(DashOrder, tags={"store:9"})
        deferred = await worker.client.dispatch(order.run, "o-h")
        async with httpx.AsyncClient(base_url=url) as web:
            assert "DashOrder" in (await web.get("/")).text
            listed = (await web.get("/workflows/DashOrder", params={"tag": "store:9"})).text
            assert f"/workflows/DashOrder/instances/{deferred.id}" in listed
            page = (await web.get(f"/workflows/DashOrder/instances/{deferred.id}")).text
            assert "running" in page
    async with httpx.AsyncClient(base_url=url) as web:
        with pytest.raises(httpx.ConnectError):  # stopped with the worker
            await web.get("/")


async def test_the_dashboard_section_of_a_worker_configuration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = {
        "transport": {"inMemory": {}},
        "services": [
            {
                "name": "Cards",
                "class": "tests.dashboard.support.FlakyCards",
                "interface": "tests.dashboard.support.Cards",
            }
        ],
        "workflows": [{"name": "DashOrder", "class": "tests.dashboard.support.DashOrder"}],
    }
    open_to_all = {**config, "dashboard": {"host": "0.0.0.0", "port": 0}}
    with pytest.raises(ConfigurationError, match=r"dashboard: .*needs a token"):
        InfiniticWorker.from_config(open_to_all)
    off = InfiniticWorker.from_config({**config, "dashboard": {"enabled": False}})
    await off.close()
    worker = InfiniticWorker.from_config({**config, "dashboard": {"port": 0}})
    with caplog.at_level(logging.INFO, logger="infinitic.dashboard"):
        async with worker:
            found = re.search(r"serves the dashboard on (http://\S+)", caplog.text)
            assert found is not None
            async with httpx.AsyncClient(base_url=found.group(1)) as web:
                home = await web.get("/")
            assert home.status_code == 200
            assert "DashOrder" in home.text
