"""The dashboard of a configuration on a broker (pulsar-lite) and Redis: what
``infinitic dashboard -c`` connects to when the workers run elsewhere (a worker of the timeline
only, listening to their events)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml
from tests.backends.support import REDIS_URL, drop_redis_keys, require, unique
from tests.dashboard.support import DashOrder, WaitableTimeline

from infinitic.dashboard import create_app
from infinitic.dashboard.cli import connect
from infinitic.worker import InfiniticWorker

pytestmark = [pytest.mark.pulsar, pytest.mark.redis, pytest.mark.timeout(120)]
HX = {"HX-Request": "true"}


async def test_a_dashboard_beside_the_workers_on_pulsar_lite(
    pulsar_lite_url: str, tmp_path: Path
) -> None:
    prefix = unique("dash") + ":"
    config = {
        "transport": {
            "pulsar": {
                "brokerServiceUrl": pulsar_lite_url,
                "brokerFlavor": "pulsar-lite",
                "namespace": unique("dash"),
            }
        },
        "storage": {"redis": {"url": require("Redis", REDIS_URL), "keyPrefix": prefix}},
        "redeliveryDelaySeconds": 0.2,
        "services": [
            {
                "name": "Cards",
                "class": "tests.dashboard.support.FlakyCards",
                "interface": "tests.dashboard.support.Cards",
            }
        ],
        "workflows": [{"name": "DashOrder", "class": "tests.dashboard.support.DashOrder"}],
    }
    path = tmp_path / "infinitic.yml"
    path.write_text(yaml.safe_dump(config))
    seen = WaitableTimeline()  # the test's own listener, to know when things happened
    worker = InfiniticWorker.from_config(config).add_event_listener(seen, subscription_name="t")
    try:
        async with worker, connect(str(path), WaitableTimeline()) as found:
            client, storage, names, timeline, metrics = found
            assert (names, metrics) == (["DashOrder"], [])
            assert timeline is not None
            order = client.new_workflow(DashOrder, tags={"store:3"})
            deferred = await client.dispatch(order.run, "o-pl")
            wid = deferred.id
            await seen.wait_for(lambda: seen.saw(wid, "executorCompleted"))
            app = create_app(client, storage, names)
            web = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x")
            async with web:
                listed = await web.get("/workflows/DashOrder", params={"tag": "store:3"})
                assert f"/workflows/DashOrder/instances/{wid}" in listed.text
                base = f"/workflows/DashOrder/instances/{wid}"
                assert 'class="status-running">running' in (await web.get(base)).text
                sent = await web.post(
                    f"{base}/signal", data={"channel": "paid", "value": "4"}, headers=HX
                )
                assert "sent to channel paid" in sent.text
                assert await deferred.result() == "o-pl charged 4"
                await seen.wait_for(lambda: seen.status(wid) == "completed")
                app = create_app(client, storage, names, timeline=timeline)
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://x"
                ) as timed:
                    for _ in range(600):  # the timeline hears the end within 30 s
                        ended = await timed.get(base)
                        if "o-pl charged 4" in ended.text:
                            break
                        await asyncio.sleep(0.05)
                assert "o-pl charged 4" in ended.text  # the result, from the timeline
                assert "No event timeline." not in ended.text
    finally:
        await drop_redis_keys(prefix)
