"""The bank-wire demo (``make demo``), in memory and from a configuration file (an embedded
pulsar-lite broker and Redis, like ``examples/pulsar-lite.yml``)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from infinitic_examples.bank_wire.__main__ import main

from .backends.support import REDIS_URL, drop_redis_keys, require, unique

EXAMPLE = Path(__file__).parents[1] / "examples" / "pulsar-lite.yml"


async def test_demo_in_memory(capsys: pytest.CaptureFixture[str]) -> None:
    await main(30, 10)
    out = capsys.readouterr().out
    assert "30 wires in" in out
    assert "30 emails; money conserved: True" in out


@pytest.mark.pulsar
@pytest.mark.redis
async def test_demo_from_the_example_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pulsar_lite")
    require("Redis", REDIS_URL)
    config = yaml.safe_load(EXAMPLE.read_text())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prefix = unique("infinitic-demo") + ":"
    config["transport"]["pulsarLite"].update(port=port, dataDir=str(tmp_path / "broker"))
    config["storage"]["redis"].update(url=REDIS_URL, keyPrefix=prefix)
    path = tmp_path / "demo.yml"
    path.write_text(yaml.safe_dump(config))
    try:
        await main(30, 10, str(path))
    finally:
        await drop_redis_keys(prefix)
    out = capsys.readouterr().out
    assert "30 wires in" in out
    assert "30 emails; money conserved: True" in out
    assert (tmp_path / "broker" / "db.rocksdb").exists()
