"""The shutdown grace period: Infinitic 0.18's ``transport.shutdownGracePeriodSeconds``, the
older top-level ``shutdownGracePeriodInSeconds``, 30 seconds by default."""

from __future__ import annotations

import pytest

from infinitic.client import InfiniticClient
from infinitic.exceptions import ConfigurationError
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker, load_config


def test_grace_period_keys() -> None:
    assert load_config({"transport": {"inMemory": {}}}).shutdown_grace_period == 30
    beside = {"transport": {"shutdownGracePeriodSeconds": 5, "inMemory": {}}}
    assert load_config(beside).shutdown_grace_period == 5
    assert load_config(beside).transport_section == {"inMemory": {}}
    older = {"shutdownGracePeriodInSeconds": 7, "transport": {"inMemory": {}}}
    assert load_config(older).shutdown_grace_period == 7
    both = {**older, **beside}
    assert load_config(both).shutdown_grace_period == 5  # the newer key wins
    env = {"INFINITIC__TRANSPORT__SHUTDOWN_GRACE_PERIOD_SECONDS": "3"}
    assert load_config(beside, environ=env).shutdown_grace_period == 3


def test_a_bad_grace_period_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="shutdownGracePeriodSeconds"):
        load_config({"transport": {"shutdownGracePeriodSeconds": -1, "inMemory": {}}})
    with pytest.raises(ConfigurationError, match="shutdownGracePeriodInSeconds"):
        load_config({"shutdownGracePeriodInSeconds": "soon", "transport": {"inMemory": {}}})
    with pytest.raises(ConfigurationError, match="shutdown_grace_period"):
        InfiniticWorker(
            transport=InMemoryTransport(), storage=InMemoryStorage(), shutdown_grace_period=-1
        )


def test_the_worker_and_clients_read_the_same_file() -> None:
    config = {"transport": {"shutdownGracePeriodSeconds": 4, "inMemory": {}}}
    assert InfiniticWorker.from_config(config).shutdown_grace_period == 4
    InfiniticClient.from_config(config)  # the key is a worker's: clients ignore it
