"""The fuzz tool's short form (``make fuzz`` runs the long one): a few hundred hostile messages
on every topic one worker process consumes (its topics, retry topics and park topics), one
near-limit oversize message, while bank wires run; the worker must survive, every bad message
must reach its own topic's dead-letter twin, its memory must not grow by 50 MB, and every wire
must complete.

The 10 MB chunked messages are left to ``make fuzz`` (they grow the worker's memory by more
than 50 MB: issue 15). The run takes about 5 to 15 s. Every target fails the test: a crash, a
bad message not dead-lettered or dead-lettered elsewhere than its own topic's twin, the memory
growth, a wire not completed. (Runs stalled for tens of seconds until the embedded broker's
connection write-buffer mark was raised: see ``_embedded.py``.)
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from fuzz import FuzzOptions, run_fuzz
from fuzz_report import RSS_GROWTH_LIMIT_MB, table

from .support import REDIS_URL, require, unavailable

MESSAGES = 300


@pytest.mark.slow
@pytest.mark.pulsar
@pytest.mark.redis
@pytest.mark.timeout(240)
async def test_fuzz(tmp_path: Path) -> None:
    require("Redis", REDIS_URL)
    if importlib.util.find_spec("pulsar_lite") is None:
        unavailable("pulsar-lite is not installed")
    options = FuzzOptions(
        messages=MESSAGES,
        wires=20,
        seed=random.randrange(1_000_000),
        park_recheck_seconds=0.1,  # a forged park time then holds a message 12.8 s at most
        oversize_topics=1,
        chunked=False,
        stall_seconds=45.0,
        max_seconds=120.0,
        workdir=tmp_path,
        redis_url=REDIS_URL,
    )
    report = await run_fuzz(options, say=print)
    print(table(report))
    explained = "\n".join([table(report), *report.details])
    assert sum(report.sent.values()) == MESSAGES
    assert report.consumed_topics == 150
    assert report.worker_alive, explained
    assert not report.misplaced, explained
    assert report.rss_growth_mb < RSS_GROWTH_LIMIT_MB, explained
    assert report.ok, explained
