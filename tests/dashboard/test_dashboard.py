"""The dashboard end to end on the in-memory transport and storage, through its HTTP pages
(httpx on the ASGI application, in the test's event loop, beside the worker and the client)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.dashboard.support import DashOrder, FlakyCards, WaitableTimeline, order_worker

from infinitic.client import InfiniticClient
from infinitic.common.tag_messages import workflow_tag_key
from infinitic.dashboard import create_app
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker.cli import main as cli_main

HX = {"HX-Request": "true"}
ROOT = Path(__file__).resolve().parents[2]


def http(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://127.0.0.1",
    )


async def test_find_by_tag_open_signal_and_see_the_result() -> None:
    timeline = WaitableTimeline()
    worker, transport, storage = order_worker(FlakyCards(), timeline)
    async with worker, InfiniticClient(transport=transport) as client:
        app = create_app(client, storage, ["DashOrder"], timeline=timeline)
        order = client.new_workflow(DashOrder, tags={"customer:42"}, meta={"shop": b"paris"})
        deferred = await client.dispatch(order.run, "o-1")
        wid = deferred.id
        # the tag is stored before the start goes on to the state engine
        await timeline.wait_for(lambda: timeline.saw(wid, "executorCompleted"))
        async with http(app) as web:
            home = await web.get("/")
            assert home.status_code == 200
            assert 'href="/workflows/DashOrder"' in home.text
            listed = await web.get("/workflows/DashOrder", params={"tag": "customer:42"})
            assert listed.status_code == 200
            assert f"/workflows/DashOrder/instances/{wid}" in listed.text
            assert "customer:42</code>: 1" in listed.text
            by_id = await web.get("/workflows/DashOrder", params={"id": wid})
            assert by_id.status_code == 303
            assert by_id.headers["location"] == f"/workflows/DashOrder/instances/{wid}"

            page = await web.get(f"/workflows/DashOrder/instances/{wid}")
            assert page.status_code == 200
            assert "channel paid" in page.text  # the receive command, ongoing
            assert 'class="status-running">running' in page.text
            assert "shop=paris" in page.text
            assert "customer:42" in page.text
            assert 'hx-confirm="Send this signal?"' in page.text

            url = f"/workflows/DashOrder/instances/{wid}/signal"
            forged = await web.post(url, data={"channel": "paid", "value": "5"})
            assert forged.status_code == 403  # not from a dashboard page: nothing sent
            bad = await web.post(url, data={"channel": "paid", "value": "{"}, headers=HX)
            assert bad.status_code == 400
            assert "not JSON" in bad.text
            sent = await web.post(url, data={"channel": "paid", "value": "5"}, headers=HX)
            assert sent.status_code == 200
            assert "sent to channel paid" in sent.text

            assert await deferred.result() == "o-1 charged 5"
            await timeline.wait_for(lambda: timeline.status(wid) == "completed")
            ended = await web.get(f"/workflows/DashOrder/instances/{wid}")
            assert 'class="status-completed">completed' in ended.text
            assert '<code id="result">&#34;o-1 charged 5&#34;</code>' in ended.text
            assert "signalReceived" in ended.text  # the timeline
            listed = await web.get("/workflows/DashOrder", params={"tag": "customer:42"})
            assert wid not in listed.text.split("Recent instances")[0]  # untagged at its end
            unknown = await web.get("/workflows/DashOrder/instances/no-such-id")
            assert "completed or unknown" in unknown.text
            assert (await web.get("/workflows/Nope")).status_code == 404


async def test_retry_failed_tasks_and_cancel_from_the_page() -> None:
    timeline = WaitableTimeline()
    cards = FlakyCards(broken=True)
    worker, transport, storage = order_worker(cards, timeline)
    async with worker, InfiniticClient(transport=transport) as client:
        app = create_app(client, storage, ["DashOrder"], timeline=timeline)
        failing = await client.dispatch(client.new_workflow(DashOrder).run, "o-2")
        other = await client.dispatch(client.new_workflow(DashOrder).run, "o-3")
        await client.get_workflow_by_id(DashOrder, failing.id).paid.send(7)
        await timeline.wait_for(lambda: timeline.status(failing.id) == "failed")
        await timeline.wait_for(lambda: timeline.saw(other.id, "executorCompleted"))
        base = f"/workflows/DashOrder/instances/{failing.id}"
        async with http(app) as web:
            page = await web.get(base)
            assert 'class="status-failed">failed' in page.text
            assert "card processor down" in page.text
            cards.broken = False
            retried = await web.post(f"{base}/retry-tasks", data={"status": "failed"}, headers=HX)
            assert "retry of the failed tasks sent" in retried.text
            await timeline.wait_for(lambda: timeline.status(failing.id) == "completed")
            done = await web.get(base)
            assert "o-2 charged 7" in done.text

            canceled = await web.post(
                f"/workflows/DashOrder/instances/{other.id}/cancel", headers=HX
            )
            assert "cancel sent" in canceled.text
            await timeline.wait_for(lambda: timeline.status(other.id) == "canceled")
            gone = await web.get(f"/workflows/DashOrder/instances/{other.id}")
            assert 'class="status-canceled">canceled' in gone.text
            for action in ("retry-workflow-task", "complete-timers"):
                answer = await web.post(f"{base}/{action}", headers=HX)
                assert answer.status_code == 200
                assert "sent" in answer.text


async def test_a_token_is_required_once_set() -> None:
    transport, storage = InMemoryTransport(), InMemoryStorage()
    async with InfiniticClient(transport=transport) as client:
        app = create_app(client, storage, ["DashOrder"], token="s3cret")
        async with http(app) as web:
            assert (await web.get("/")).status_code == 401
            assert (await web.get("/", params={"token": "wrong"})).status_code == 401
            bearer = await web.get("/", headers={"Authorization": "Bearer s3cret"})
            assert bearer.status_code == 200
            once = await web.get("/workflows/DashOrder", params={"token": "s3cret", "tag": "a"})
            assert once.status_code == 303
            assert once.headers["location"] == "/workflows/DashOrder?tag=a"
            assert "httponly" in once.headers["set-cookie"].lower()
            assert (await web.get("/workflows/DashOrder?tag=a")).status_code == 200  # cookie
            web.cookies.clear()
            assert (await web.get("/static/htmx.min.js")).status_code == 401


async def test_pages_load_htmx_with_its_eval_and_scripts_off() -> None:
    """The vendored htmx can eval expressions (hx-on, js: values, trigger filters) and run
    scripts in swapped HTML; the dashboard uses neither, and shows workflow data (names, tags,
    arguments): every page turns both off before htmx loads, so that data is never code."""
    transport, storage = InMemoryTransport(), InMemoryStorage()
    async with InfiniticClient(transport=transport) as client:
        app = create_app(client, storage, ["DashOrder"])
        async with http(app) as web:
            for path in ("/", "/workflows/DashOrder"):  # every page extends base.html
                page = (await web.get(path)).text
                config = page.index('<meta name="htmx-config"')
                assert config < page.index('<script src="/static/htmx.min.js">'), path
                tag = page[config : page.index(">", config)]
                assert '"allowEval": false' in tag, path
                assert '"allowScriptTags": false' in tag, path


def test_without_the_package_the_command_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "infinitic.dashboard.cli", None)  # as if not installed
    assert cli_main(["dashboard", "-c", "infinitic.yml"]) == 2
    assert "pip install infinitic-dashboard" in capsys.readouterr().err


def test_the_command_refuses_another_interface_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "infinitic.yml"
    config.write_text("transport: {inMemory: {}}\n")
    assert cli_main(["dashboard", "-c", str(config), "--host", "0.0.0.0"]) == 2
    assert "bound to 0.0.0.0, it needs a token" in capsys.readouterr().err


@pytest.fixture
async def bulk() -> AsyncIterator[tuple[InfiniticClient, InMemoryStorage, list[str]]]:
    """2,500 ids under one tag, as the tag engine stores them."""
    transport, storage = InMemoryTransport(), InMemoryStorage()
    ids = [f"id-{i:05d}" for i in range(2_500)]
    key = workflow_tag_key("DashOrder", "bulk")
    for workflow_id in ids:
        await storage.key_set.add(key, workflow_id)
    async with InfiniticClient(transport=transport) as client:
        yield client, storage, ids


async def test_2500_instances_are_listed_page_by_page(
    bulk: tuple[InfiniticClient, InMemoryStorage, list[str]],
) -> None:
    client, storage, ids = bulk
    app = create_app(client, storage, ["DashOrder"], page_size=100)
    seen: list[str] = []
    timings: list[float] = []
    url: str | None = "/workflows/DashOrder?tag=bulk"
    async with http(app) as web:
        while url is not None:
            began = time.perf_counter()
            page = await web.get(url)
            timings.append(time.perf_counter() - began)
            assert page.status_code == 200
            assert "bulk</code>: 2500" in page.text
            seen += re.findall(r'/workflows/DashOrder/instances/([^"]+)"', page.text)
            marker = 'id="next-page" href="'
            url = (
                page.text.split(marker)[1].split('"')[0].replace("&amp;", "&")
                if marker in page.text
                else None
            )
    assert seen == ids
    assert len(timings) == 25
    timings.sort()
    print(
        f"2,500 ids, 25 pages of 100: median {timings[12] * 1000:.1f} ms, "
        f"slowest {timings[-1] * 1000:.1f} ms (the first, templates compiled)"
    )


def test_the_command_serves_a_configuration(tmp_path: Path) -> None:
    """``infinitic dashboard -c`` on an in-memory configuration: it runs the file's workflows
    and serves their pages until interrupted."""
    config = tmp_path / "infinitic.yml"
    config.write_text(
        "transport: {inMemory: {}}\n"
        "services:\n"
        "  - {name: Cards, class: tests.dashboard.support.FlakyCards,"
        " interface: tests.dashboard.support.Cards}\n"
        "workflows:\n"
        "  - {name: DashOrder, class: tests.dashboard.support.DashOrder}\n"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [str(Path(sys.executable).parent / "infinitic"), "dashboard", "-c", str(config)]
    process = subprocess.Popen(
        [*command, "--port", str(port)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                home = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "the dashboard did not answer within 30 s"
                time.sleep(0.1)  # the process is starting: nothing to wait on but its port
        assert home.status_code == 200
        assert 'href="/workflows/DashOrder"' in home.text
        listed = httpx.get(f"http://127.0.0.1:{port}/workflows/DashOrder?tag=none", timeout=5)
        assert "none</code>: 0" in listed.text
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
