"""Benchmark: by-tag fan-out over many workflow instances under one tag, with bounded memory.

Part 1 (the tag engine): ``--ids`` workflow ids (default 100,000) under one tag in an in-memory
key-set storage; a ``CancelWorkflow`` is fanned out by tag through the workflow tag engine on the
in-memory transport, and a consumer of ``workflow-cmd`` counts the copies. Reported: the time,
the rate, and the peak memory allocated during the fan-out (tracemalloc, above what was
allocated before it), for a tenth of the ids and for all of them: the engine reads one page at a
time, so the peak does not grow with the number of instances.

Part 2 (end to end): ``--instances`` real instances (default 10,000) of a waiting workflow with
one tag, started by a client and run by a worker; then ``cancel`` by tag through the fan-out, and
every instance's waiter gets WorkflowCanceledError. Reported: start and cancel times, peak RSS.

Run: ``uv run python tools/bench_tags.py [--ids 100000] [--instances 10000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import time
import tracemalloc
from collections.abc import Awaitable, Callable

from infinitic.client import InfiniticClient
from infinitic.common import TopicKind, topic
from infinitic.common.messages import CancelWorkflow
from infinitic.common.tag_messages import workflow_tag_key
from infinitic.exceptions import WorkflowCanceledError
from infinitic.storage import InMemoryStorage
from infinitic.transport import (
    ConsumerSettings,
    InMemoryTransport,
    SubscriptionType,
    TransportMessage,
)
from infinitic.worker import InfiniticWorker
from infinitic.workflow_tag import WorkflowTagEngine
from infinitic.workflows import Channel, Workflow

TAG = "campaign:42"


class Subscriber(Workflow):
    stop = Channel[str]()

    async def wait(self) -> str:
        return await self.stop.receive(limit=1)


async def until(predicate: Callable[[], Awaitable[bool]]) -> None:
    for _ in itertools.count():
        if await predicate():
            return
        await asyncio.sleep(0.05)


async def fan_out(ids: int) -> tuple[float, int, int]:
    """(seconds, copies received, peak bytes allocated during the fan-out)."""
    storage = InMemoryStorage()
    key = workflow_tag_key("Subscriber", TAG)
    for i in range(ids):
        await storage.key_set.add(key, f"{i:012d}")
    async with InMemoryTransport() as transport:
        engine = WorkflowTagEngine("Subscriber", transport, storage.key_set)
        done = asyncio.Event()
        received = 0

        async def count(message: TransportMessage) -> None:
            nonlocal received
            received += 1
            if received == ids:
                done.set()

        async def tag_engine(message: TransportMessage) -> None:
            from infinitic.common import decode_message

            await engine.handle(decode_message(message.data))

        await transport.subscribe(
            topic(TopicKind.WORKFLOW_TAG, "Subscriber"),
            "bench",
            tag_engine,
            ConsumerSettings(type=SubscriptionType.KEY_SHARED, concurrency=4),
        )
        await transport.subscribe(
            topic(TopicKind.WORKFLOW_CMD, "Subscriber"),
            "bench",
            count,
            ConsumerSettings(type=SubscriptionType.KEY_SHARED, concurrency=16),
        )
        tracemalloc.start()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        started = time.perf_counter()
        client = InfiniticClient(transport=transport)
        await client._send_by_tag(
            "Subscriber", TAG, CancelWorkflow(workflow_name="Subscriber", workflow_id="")
        )
        await asyncio.wait_for(done.wait(), 600)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        await client.close()
    return elapsed, received, peak - before


async def end_to_end(instances: int) -> tuple[float, float]:
    """(seconds to start every instance, seconds to cancel them all by tag)."""
    transport, storage = InMemoryTransport(), InMemoryStorage()
    worker = InfiniticWorker(transport=transport, storage=storage, workflow_cache_size=0)
    worker.add_workflow(Subscriber, concurrency=32)
    async with worker, InfiniticClient(transport=transport) as client:
        stub = client.new_workflow(Subscriber, tags={TAG})
        started = time.perf_counter()
        deferreds = await asyncio.gather(*(client.dispatch(stub.wait) for _ in range(instances)))
        by_tag = client.get_workflow_by_tag(Subscriber, TAG)

        async def all_tagged() -> bool:
            return len(await client.get_ids(by_tag)) == instances

        async def idle() -> bool:  # every instance waits on its channel
            return transport.idle()

        await until(all_tagged)
        await until(idle)
        start_seconds = time.perf_counter() - started
        started = time.perf_counter()
        await client._send_by_tag(
            "Subscriber", TAG, CancelWorkflow(workflow_name="Subscriber", workflow_id="")
        )
        canceled = 0
        for d in deferreds:
            try:
                await d
            except WorkflowCanceledError:
                canceled += 1
        cancel_seconds = time.perf_counter() - started
        assert canceled == instances, f"{canceled} of {instances} canceled"

        async def untagged() -> bool:  # tags are removed as instances end
            return not await client.get_ids(by_tag)

        await until(untagged)
    return start_seconds, cancel_seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=100_000)
    parser.add_argument("--instances", type=int, default=10_000)
    args = parser.parse_args()
    print("fan-out of one command by tag (page of 1000 ids per tag-engine message)")
    for n in (args.ids // 10, args.ids):
        seconds, received, peak = await fan_out(n)
        print(
            f"  {n:>9,} ids: {seconds:6.2f}s  {received / seconds:9,.0f} copies/s  "
            f"peak allocated during fan-out {peak / 1e6:6.2f} MB"
        )
    if args.instances:
        start, cancel = await end_to_end(args.instances)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"end to end with {args.instances:,} running instances under one tag")
        print(
            f"  started in {start:.2f}s; canceled by tag in {cancel:.2f}s "
            f"({args.instances / cancel:,.0f}/s); process peak RSS {rss:.0f} MB"
        )


if __name__ == "__main__":
    asyncio.run(main())
