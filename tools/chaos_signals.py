"""Many signals at once to one workflow, handled by several worker processes.

    python tools/chaos_signals.py [--rounds 100] [--signals 50] [--workers 3] [--json]

Each round starts a workflow that receives ``--signals`` values on a channel and returns their
sum; once it receives, the client sends every value at once. With several worker processes on
pulsar-lite (Shared subscriptions: two processes handle messages of one workflow at the same
time) each round must end with the right sum. Rounds run one after the other; a round that has
no result within ``--stall-seconds`` counts as stuck. Exit status 1 when a round is stuck or
wrong. Storage: Redis (REDIS_URL, a key prefix of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from chaos_cluster import free_port
from infinitic.client import InfiniticClient
from infinitic.storage import RedisStorage
from infinitic.transport_pulsar import EmbeddedPulsarLite, PulsarTransport
from infinitic.workflows import Channel, Workflow

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
TOOLS = Path(__file__).resolve().parent


class SignalSum(Workflow):
    """Receives ``n`` integers on ``values`` and returns their sum."""

    values = Channel[int]()

    async def total(self, n: int) -> int:
        received = self.values.receive(limit=n)
        total = 0
        for _ in range(n):
            total += await received
        return total


async def _receiving(client: InfiniticClient, workflow_id: str, deadline: float) -> bool:
    stub = client.get_workflow_by_id(SignalSum, workflow_id)
    while time.monotonic() < deadline:
        state = await client.get_workflow_state(stub)
        commands = (state or {}).get("commands", {})
        if any(c.get("kind") == "receive" for c in commands.values()):
            return True
        await asyncio.sleep(0.01)
    return False


def _open_log(path: Path) -> Any:
    return path.open("ab")  # closed by run()


async def run(rounds: int, signals: int, workers: int, stall: float) -> dict[str, Any]:
    prefix = f"chaos-signals-{uuid.uuid4().hex[:8]}:"
    with tempfile.TemporaryDirectory(prefix="chaos-signals-") as tmp:
        directory = Path(tmp)
        broker = EmbeddedPulsarLite(port=free_port(), data_dir=directory / "broker")
        await broker.start()
        namespace = f"signals-{uuid.uuid4().hex[:8]}"
        config = {
            "name": "signals-worker",
            "transport": {
                "pulsar": {
                    "brokerServiceUrl": broker.service_url,
                    "brokerFlavor": "pulsar-lite",
                    "namespace": namespace,
                }
            },
            "storage": {"redis": {"url": REDIS_URL, "keyPrefix": prefix}},
            "workflows": [
                {"name": "SignalSum", "class": "chaos_signals.SignalSum", "concurrency": 20}
            ],
        }
        path = directory / "infinitic.yml"
        path.write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TOOLS), os.environ.get("PYTHONPATH", "")]),
        }
        log = _open_log(directory / "worker.log")
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "infinitic.worker.cli",
                "worker",
                "-c",
                str(path),
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
            for _ in range(workers)
        ]
        storage = RedisStorage.from_url(REDIS_URL, key_prefix=prefix)
        transport = PulsarTransport.for_pulsar_lite(broker.service_url, namespace=namespace)
        stuck = wrong = done = 0
        started = time.monotonic()
        try:
            async with InfiniticClient(transport=transport, storage=storage) as client:
                for _ in range(rounds):
                    deferred = await client.dispatch(client.new_workflow(SignalSum).total, signals)
                    if not await _receiving(client, deferred.id, time.monotonic() + stall):
                        stuck += 1
                        continue
                    running: Any = client.get_workflow_by_id(SignalSum, deferred.id)
                    await asyncio.gather(*(running.values.send(i + 1) for i in range(signals)))
                    try:
                        result = await asyncio.wait_for(deferred.result(), stall)
                    except TimeoutError:
                        stuck += 1
                        continue
                    if result == signals * (signals + 1) // 2:
                        done += 1
                    else:
                        wrong += 1
        finally:
            for p in processes:
                if p.returncode is None:
                    p.kill()
                await p.wait()
            log.close()
            await transport.close()
            await storage.close()
            await broker.stop()
    return {
        "rounds": rounds,
        "signals": signals,
        "workers": workers,
        "completed": done,
        "stuck": stuck,
        "wrong": wrong,
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--signals", type=int, default=50)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--stall-seconds", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(run(args.rounds, args.signals, args.workers, args.stall_seconds))
    if args.json:
        print(json.dumps(report))
    else:
        print(" ".join(f"{k}={v}" for k, v in report.items()))
    return 0 if report["stuck"] == 0 and report["wrong"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
