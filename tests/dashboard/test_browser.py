"""The dashboard in a real browser: Debian's chromium driven by Playwright (its Python package
pointed at that executable; no ``playwright install``). Screenshots are kept in the test's
temporary directory, whose path is printed."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest
import uvicorn
from tests.dashboard.support import WAIT, DashOrder, FlakyCards, WaitableTimeline, order_worker

from infinitic.client import InfiniticClient
from infinitic.dashboard import create_app
from infinitic.worker import WorkerMetrics

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium executable (apt-get install -y chromium)"
)


async def test_find_fix_retry_and_read_the_result_in_a_browser(tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"dashboard screenshots: {shots}")
    timeline = WaitableTimeline()
    cards = FlakyCards(broken=True)
    worker, transport, storage = order_worker(cards, timeline, WorkerMetrics(port=0))
    async with worker, InfiniticClient(transport=transport) as client:
        deferred = await client.dispatch(
            client.new_workflow(DashOrder, tags={"vip"}).run, "o-browser"
        )
        wid = deferred.id
        await timeline.wait_for(lambda: timeline.saw(wid, "executorCompleted"))
        assert worker.metrics is not None
        assert worker.metrics.url is not None
        app = create_app(
            client,
            storage,
            ["DashOrder"],
            timeline=timeline,
            refresh_seconds=0.3,
            metrics_urls=[worker.metrics.url],
        )
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        port = listening.getsockname()[1]
        serving = asyncio.create_task(server.serve(sockets=[listening]))
        try:
            base = f"http://127.0.0.1:{port}"
            async with playwright_api.async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM)
                page = await browser.new_page()
                page.set_default_timeout(WAIT * 1000)
                page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
                await page.goto(base)
                await page.fill("input[name=tag]", "vip")
                await page.click("text=list by tag")
                await page.click(f"a[href='/workflows/DashOrder/instances/{wid}']")
                await page.wait_for_selector("#status.status-running")
                await page.screenshot(path=shots / "1-running.png", full_page=True)

                await page.fill("#signal-channel", "paid")
                await page.fill("#signal-value", "7")
                await page.click("#send-signal")
                await page.wait_for_selector("#message >> text=sent to channel paid")
                await page.wait_for_selector("#status.status-failed")  # the card bug
                await page.screenshot(path=shots / "2-failed.png", full_page=True)

                cards.broken = False  # the fix is deployed
                await page.click("#retry-tasks")
                await page.wait_for_selector("#message >> text=retry of the failed tasks sent")
                await page.wait_for_selector("#status.status-completed")
                await page.screenshot(path=shots / "3-completed.png", full_page=True)

                await page.goto(base)
                await page.fill("input[name=id]", wid)
                await page.click("text=open by id")
                result = await page.text_content("#result")
                assert result == '"o-browser charged 7"'
                await page.screenshot(path=shots / "4-result-by-id.png", full_page=True)

                await page.click("text=metrics")
                await page.wait_for_selector("#topics >> text=service_executor")
                await page.screenshot(path=shots / "5-metrics.png", full_page=True)
                await browser.close()
        finally:
            server.should_exit = True
            await serving
    summary = timeline.summary(wid)
    assert summary is not None
    assert summary.result == "o-browser charged 7"
    assert sorted(p.name for p in shots.iterdir()) == [
        "1-running.png",
        "2-failed.png",
        "3-completed.png",
        "4-result-by-id.png",
        "5-metrics.png",
    ]
