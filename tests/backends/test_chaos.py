"""The chaos tool's short form (``make chaos`` runs the long one): 300 bank wires over three
worker processes while three workers are SIGKILLed, the broker is SIGKILLed and the storage
(a private ``redis-server`` with an fsynced append-only file, or a private PostgreSQL cluster)
crashes, each at a random moment and restarted; no wire may be stuck, lost or wrong."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from chaos import ChaosOptions, run_chaos, table
from chaos_storage import unavailable_reason

from .support import REDIS_URL, require, unavailable

WIRES = 300


@pytest.mark.slow
@pytest.mark.pulsar
@pytest.mark.redis
@pytest.mark.timeout(300)
@pytest.mark.parametrize("storage", ["redis", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_chaos(storage: str, tmp_path: Path) -> None:
    require("Redis", REDIS_URL)  # where the services record their side effects
    reason = unavailable_reason(storage)
    if reason is not None:
        unavailable(f"{reason} (the storage server the chaos run restarts)")
    if importlib.util.find_spec("pulsar_lite") is None:
        unavailable("pulsar-lite is not installed")
    options = ChaosOptions(
        wires=WIRES,
        workers=3,
        worker_kills=3,
        storages=(storage,),
        seed=random.randrange(1_000_000),
        stall_seconds=20.0,
        max_seconds=200.0,
        workdir=tmp_path,
        bank_redis_url=REDIS_URL,
    )
    [report] = await run_chaos(options)
    print(table([report]))
    assert report.ok, "\n".join([f"seed {report.seed}", table([report]), *report.details])
    assert report.completed == WIRES
    assert report.faults == 5
