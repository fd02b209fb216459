"""The dashboard on each real storage: the tag sets read page by page, an instance's stored
state read and steered, its end seen in the timeline."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from tests.backends.support import Backend, open_backend
from tests.dashboard.support import Cards, DashOrder, FlakyCards, WaitableTimeline

from infinitic.client import InfiniticClient
from infinitic.common.tag_messages import workflow_tag_key
from infinitic.dashboard import create_app
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker

BACKENDS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
HX = {"HX-Request": "true"}


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    opened = await open_backend(str(request.param))
    try:
        yield opened
    finally:
        await opened.close()


async def test_list_open_and_signal_on_a_real_storage(backend: Backend) -> None:
    storage = backend.storage
    key = workflow_tag_key("DashOrder", "batch:9")
    others = [f"id-{i:04d}" for i in range(300)]
    for workflow_id in others:
        await storage.key_set.add(key, workflow_id)
    timeline = WaitableTimeline()
    transport = InMemoryTransport()
    worker = InfiniticWorker(transport=transport, storage=storage, redelivery_delay=0.05)
    worker.add_service(FlakyCards(), interface=Cards, retry=None)
    worker.add_workflow(DashOrder)
    worker.add_event_listener(timeline, batch={"max_messages": 100, "max_seconds": 0.02})
    async with worker, InfiniticClient(transport=transport) as client:
        order = client.new_workflow(DashOrder, tags={"batch:9"})
        deferred = await client.dispatch(order.run, "o-db")
        wid = deferred.id
        await timeline.wait_for(lambda: timeline.saw(wid, "executorCompleted"))
        app = create_app(client, storage, ["DashOrder"], timeline=timeline, page_size=100)
        web = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x")
        async with web:
            seen: list[str] = []
            timings: list[float] = []
            url: str | None = "/workflows/DashOrder?tag=batch:9"
            while url is not None:
                began = time.perf_counter()
                page = await web.get(url)
                timings.append(time.perf_counter() - began)
                assert "batch:9</code>: 301" in page.text
                listed = page.text.split("Recent instances")[0]  # not the timeline's table
                seen += re.findall(r'/workflows/DashOrder/instances/([^"]+)"', listed)
                found = re.search(r'id="next-page" href="([^"]+)"', page.text)
                url = found.group(1).replace("&amp;", "&") if found else None
            assert sorted(seen) == sorted([*others, wid])
            assert len(timings) == 4
            print(f"301 ids in pages of 100: slowest page {max(timings) * 1000:.1f} ms")

            base = f"/workflows/DashOrder/instances/{wid}"
            page = await web.get(base)
            assert "channel paid" in page.text
            assert 'class="status-running">running' in page.text
            sent = await web.post(
                f"{base}/signal", data={"channel": "paid", "value": "3"}, headers=HX
            )
            assert "sent to channel paid" in sent.text
            await timeline.wait_for(lambda: timeline.status(wid) == "completed")
            ended = await web.get(base)
            assert "o-db charged 3" in ended.text
