"""The state engine rides out storage outages, but not corrupted values."""

from __future__ import annotations

import pytest

from infinitic.common.messages import DispatchWorkflow, Requester
from infinitic.exceptions import CorruptedValueError, StorageError, VersionConflictError
from infinitic.storage import InMemoryKeyValueStorage, VersionedValue
from infinitic.transport import InMemoryTransport
from infinitic.workflow_engine import WorkflowStateEngine, state_key
from infinitic.workflow_engine import _storage_retry as retry_module
from infinitic.workflow_engine._storage_retry import StorageRetryPolicy, retry_storage


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def policy(clock: FakeClock, max_elapsed: float = 10.0) -> StorageRetryPolicy:
    return StorageRetryPolicy(
        initial_delay=0.1, max_delay=2.0, max_elapsed=max_elapsed, jitter=0.0,
        sleep=clock.sleep, clock=clock.clock,
    )  # fmt: skip


class FlakyStorage(InMemoryKeyValueStorage):
    """Fails its first ``failures`` calls with ``error``."""

    def __init__(self, failures: int, error: Exception) -> None:
        super().__init__()
        self.failures = failures
        self.error = error
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error

    async def get(self, key: str) -> VersionedValue | None:
        self._maybe_fail()
        return await super().get(key)

    async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
        self._maybe_fail()
        return await super().put(key, value, expected_version=expected_version)


async def test_retries_with_exponential_backoff_then_succeeds() -> None:
    clock = FakeClock()
    storage = FlakyStorage(4, StorageError("redis down"))
    assert await retry_storage(policy(clock), storage.get, "k") is None
    assert clock.sleeps == [0.1, 0.2, 0.4, 0.8]


async def test_gives_up_after_the_bounded_time() -> None:
    clock = FakeClock()
    storage = FlakyStorage(1000, StorageError("redis down"))
    with pytest.raises(StorageError, match="redis down"):
        await retry_storage(policy(clock, max_elapsed=5.0), storage.get, "k")
    assert sum(clock.sleeps) <= 5.0
    assert clock.sleeps == policy(clock, 5.0).delays()


@pytest.mark.parametrize(
    "error",
    [CorruptedValueError("workflow-state:W:x", "garbage"), VersionConflictError("k", 1, 2)],
    ids=["corrupted", "conflict"],
)
async def test_corruption_and_conflicts_are_raised_at_once(error: StorageError) -> None:
    clock = FakeClock()
    storage = FlakyStorage(1, error)
    with pytest.raises(type(error)):
        await retry_storage(policy(clock), storage.get, "k")
    assert clock.sleeps == []


def _start() -> DispatchWorkflow:
    return DispatchWorkflow(
        workflow_name="W",
        workflow_id="wf",
        method_name="run",
        method_args=[],
        requester=Requester.client("c"),
    )


async def test_engine_survives_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(retry_module, "DEFAULT_STORAGE_RETRY", policy(clock))
    storage = FlakyStorage(3, StorageError("connection refused"))
    engine = WorkflowStateEngine("W", InMemoryTransport(), storage, clock=lambda: 1.0)
    await engine.handle(_start())
    assert (await storage.get(state_key("W", "wf"))) is not None
    assert len(clock.sleeps) == 3


async def test_engine_reprocesses_its_own_write_reported_as_a_conflict() -> None:
    """A write retried after a lost reply reports a conflict with itself: processing the
    message again on the fresh state changes nothing (idempotent)."""

    class LostReply(InMemoryKeyValueStorage):
        lost = False

        async def put(self, key: str, value: bytes, *, expected_version: int | None = None) -> int:
            version = await super().put(key, value, expected_version=expected_version)
            if not self.lost:
                self.lost = True
                raise VersionConflictError(key, expected_version, version)
            return version

    storage = LostReply()
    engine = WorkflowStateEngine("W", InMemoryTransport(), storage, clock=lambda: 1.0)
    await engine.handle(_start())
    stored = await storage.get(state_key("W", "wf"))
    assert stored is not None
    assert stored.version == 1


async def test_engine_raises_corrupted_state_naming_the_key() -> None:
    storage = InMemoryKeyValueStorage()
    key = state_key("W", "wf")
    await storage.put(key, b"\xc1garbage")
    engine = WorkflowStateEngine("W", InMemoryTransport(), storage, clock=lambda: 1.0)
    with pytest.raises(CorruptedValueError, match="workflow-state:W:wf"):
        await engine.handle(_start())
