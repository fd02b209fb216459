"""The metrics page: workers' Prometheus endpoints read and summed per topic."""

from __future__ import annotations

import asyncio
import math
import re

import httpx
from tests.dashboard.support import Cards, DashOrder, FlakyCards

from infinitic.client import InfiniticClient
from infinitic.dashboard import create_app, histogram_quantile
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker, WorkerMetrics

HX = {"HX-Request": "true"}


def test_quantiles_of_a_cumulative_histogram() -> None:
    buckets = {0.01: 50.0, 0.1: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == 0.01
    assert histogram_quantile(0.7, buckets) == 0.01 + (0.1 - 0.01) * (70 - 50) / 40
    assert histogram_quantile(0.99, buckets) == 0.1 + (1.0 - 0.1) * (99 - 90) / 10
    assert histogram_quantile(0.99, {0.1: 1.0, math.inf: 2.0}) == 0.1  # in +Inf: the last bound
    assert histogram_quantile(0.5, {math.inf: 0.0}) is None


async def test_the_metrics_page_reads_the_workers_endpoints() -> None:
    transport, storage = InMemoryTransport(), InMemoryStorage()
    worker = InfiniticWorker(transport=transport, storage=storage, metrics=WorkerMetrics(port=0))
    worker.add_service(FlakyCards(), interface=Cards, retry=None)
    worker.add_workflow(DashOrder)
    async with worker, InfiniticClient(transport=transport) as client:
        for i in range(3):
            deferred = await client.dispatch(client.new_workflow(DashOrder).run, f"o-{i}")
            await client.get_workflow_by_id(DashOrder, deferred.id).paid.send(i)
            assert await deferred.result() == f"o-{i} charged {i}"
        assert worker.metrics is not None
        url = worker.metrics.url
        assert url is not None
        dead = "http://127.0.0.1:9/metrics"  # nothing listens there
        app = create_app(client, storage, ["DashOrder"], metrics_urls=[url, dead])
        web = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x")
        async with web:
            first = await web.get("/metrics")
            assert first.status_code == 200
            assert f"{dead}: " in first.text  # its error, the other endpoint still shown
            rows = re.findall(r"<tr>\s*<td>(\w+)</td><td>([^<]+)</td><td>(\d+)</td>", first.text)
            handled = {(component, topic): int(n) for component, topic, n in rows}
            engine = [n for (c, t), n in handled.items() if c == "workflow_state_engine"]
            assert sum(engine) >= 6  # 3 starts and 3 signals at least, and the task results
            assert any(n > 0 for (c, _), n in handled.items() if c == "service_executor")
            assert " ms</td>" in first.text  # p50 and p99
            again = await web.get("/metrics?fragment=1")
            assert re.search(r"<td>\d+\.\d</td>", again.text)  # a rate, since the first read
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(client, storage, ["DashOrder"])),
            base_url="http://x",
        ) as bare:
            assert (await bare.get("/metrics")).status_code == 404


class HeldCards:
    """Charges once let go: its tasks wait in the topic meanwhile."""

    def __init__(self) -> None:
        self.go = asyncio.Event()

    async def charge(self, amount: int) -> str:
        await self.go.wait()
        return f"charged {amount}"


async def test_the_metrics_page_shows_backlogs_where_the_broker_tells_them() -> None:
    transport, storage = InMemoryTransport(), InMemoryStorage()
    worker = InfiniticWorker(transport=transport, storage=storage, metrics=WorkerMetrics(port=0))
    cards = HeldCards()
    worker.add_service(cards, interface=Cards, concurrency=1)
    worker.add_workflow(DashOrder)
    async with worker, InfiniticClient(transport=transport) as client:
        deferreds = []
        for i in range(3):
            deferred = await client.dispatch(client.new_workflow(DashOrder).run, f"o-{i}")
            await client.get_workflow_by_id(DashOrder, deferred.id).paid.send(i)
            deferreds.append(deferred)
        topic = "task-executor:Cards"
        for _ in range(3000):  # the three tasks reach the service's topic (30 s at most)
            if await transport.backlog(topic, "infinitic") == 3:
                break
            await asyncio.sleep(0.01)
        assert await transport.backlog(topic, "infinitic") == 3
        assert await transport.backlog(topic, "nobody") is None  # no such subscription
        assert worker.metrics is not None
        assert worker.metrics.url is not None
        app = create_app(client, storage, ["DashOrder"], metrics_urls=[worker.metrics.url])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://x"
        ) as web:
            page = (await web.get("/metrics")).text
            assert "<th>backlog</th>" in page
            row = re.search(rf"<td>{re.escape(topic)}</td>.*?</tr>", page, flags=re.DOTALL)
            assert row is not None
            assert '<td class="backlog">3</td>' in row.group(0)  # 1 being handled, 2 waiting
            cards.go.set()
            assert [await d.result() for d in deferreds] == [f"o-{i} charged {i}" for i in range(3)]
            after = (await web.get("/metrics?fragment=1")).text
            row = re.search(rf"<td>{re.escape(topic)}</td>.*?</tr>", after, flags=re.DOTALL)
            assert row is not None
            assert '<td class="backlog">0</td>' in row.group(0)
