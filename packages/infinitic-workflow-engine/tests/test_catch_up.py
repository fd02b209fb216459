"""A live instance that is behind catches up: when two engines run the steps of one instance in
turn (two worker processes on a broker without key affinity), each replays only the steps the
other ran, not the whole history at each of its turns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from infinitic.common import command_id
from infinitic.common.messages import (
    CommandResult,
    DispatchWorkflow,
    ExecuteTask,
    MethodOutcome,
    Requester,
)
from infinitic.storage import InMemoryKeyValueStorage, VersionedValue
from infinitic.workflow_engine import (
    WorkflowExecutor,
    WorkflowState,
    WorkflowStateEngine,
    decode_state,
    encode_state,
    state_key,
)
from infinitic.workflows import Workflow, inline, new_service

from .capturing import CapturingTransport


class Numbers(Protocol):
    async def twice(self, i: int) -> int: ...


class Chain(Workflow):
    numbers = new_service(Numbers)

    async def run(self, n: int) -> int:
        total = 0
        for i in range(n):
            total += await self.numbers.twice(i)
            total += await inline(lambda i=i: i)  # type: ignore[misc]
        return total


class CountingStorage(InMemoryKeyValueStorage):
    """Counts the reads of several values (archived chunks are read so)."""

    def __init__(self) -> None:
        super().__init__()
        self.many_reads = 0

    async def get_many(self, keys: Sequence[str]) -> dict[str, VersionedValue]:
        self.many_reads += 1
        return await super().get_many(keys)


class Pair:
    """Two state engines, each with its own executor, on one storage; the test says which
    one handles each task's result."""

    def __init__(self, chunk_steps: int = 64) -> None:
        self.kv = CountingStorage()
        self.transport = CapturingTransport()
        self.executors = [WorkflowExecutor({"Chain": Chain}) for _ in range(2)]
        self.engines = [
            WorkflowStateEngine(
                "Chain", self.transport, self.kv, executor=e, history_chunk_steps=chunk_steps
            )
            for e in self.executors
        ]

    def replayed(self) -> int:
        return sum(e.replayed_steps for e in self.executors)

    async def start(self, n: int) -> None:
        await self.engines[0].handle(
            DispatchWorkflow(
                workflow_name="Chain",
                workflow_id="wf",
                method_name="run",
                method_args=[n],
                requester=Requester.client("test"),
            )
        )

    async def result(self, i: int, engine: int) -> None:
        """The result of the i-th task, handled by ``engine``."""
        tasks = [m for m in self.transport.sent if isinstance(m, ExecuteTask)]
        assert tasks[-1].method_args == [i]
        await self.engines[engine].handle(_result(i))

    async def turns(self, results: range) -> None:
        """The results of ``results``, each handled by the engine that did not run the step
        before (A ran step 0; then B, A, B, ...)."""
        for i in results:
            await self.result(i, engine=(i + 1) % 2)

    async def change_stored_state(self, change: Callable[[WorkflowState], None]) -> None:
        """Rewrite the stored state as ``change`` says (what another engine could have stored)."""
        stored = await self.kv.get(state_key("Chain", "wf"))
        assert stored is not None
        state = decode_state("k", stored.value)
        change(state)
        await self.kv.put(
            state_key("Chain", "wf"), encode_state(state), expected_version=stored.version
        )

    def outcome(self) -> Any:
        outcomes = [m for m in self.transport.sent if isinstance(m, MethodOutcome)]
        return outcomes[-1].value if outcomes else None


def _result(i: int) -> CommandResult:
    return CommandResult(
        workflow_name="Chain",
        workflow_id="wf",
        command_id=command_id("wf", "wf", 2 * i),  # each loop: a task, then an inline
        status="completed",
        value=2 * i,
    )


N = 30
EXPECTED = sum(3 * i for i in range(N))


async def test_engines_taking_turns_replay_only_the_steps_they_did_not_run() -> None:
    pair = Pair()
    await pair.start(N)
    await pair.turns(range(N))
    assert pair.outcome() == EXPECTED
    # Each engine replays each step the other ran, once (B: step 0 at its first turn): one
    # step per turn. A whole replay at each turn would be 0 + 1 + ... + N.
    assert pair.replayed() <= N + 1
    assert all(e.executed_tasks >= N // 2 for e in pair.executors)


async def test_an_instance_behind_another_history_is_not_caught_up() -> None:
    pair = Pair()
    await pair.start(N)
    await pair.turns(range(10))

    # A ran step 10 last, B step 9. Now the history says another task ended step 9 (as when
    # the task B ran was superseded): B's instance did not run this history.
    def another_task(state: WorkflowState) -> None:
        assert state.steps[9].task_id is not None
        state.steps[9].task_id = "a task B never ran"

    await pair.change_stored_state(another_task)
    before = pair.executors[1].replayed_steps
    await pair.result(10, engine=1)  # step 11, on B
    assert pair.executors[1].replayed_steps - before == 11  # steps 0 to 10, on a new instance
    await pair.turns(range(11, N))
    assert pair.outcome() == EXPECTED


async def test_an_instance_behind_catches_up_without_reading_the_archived_history() -> None:
    pair = Pair(chunk_steps=4)  # the history goes to chunks of 4 steps as it grows
    await pair.start(N)
    await pair.turns(range(N))
    assert pair.outcome() == EXPECTED
    assert pair.replayed() <= N + 1
    # B's first turn replays the whole history (step 0, not archived yet); every later turn
    # catches up on the steps in the state at hand: no chunk is read for it.
    assert pair.kv.many_reads <= 1


async def test_a_catch_up_that_fails_on_the_state_at_hand_replays_the_whole_history() -> None:
    pair = Pair(chunk_steps=4)
    await pair.start(N)
    await pair.turns(range(12))

    # The stored digest of inline values no longer matches what B's instance computed: its
    # catch-up is refused, and the task runs again on the whole history (chunks read).
    def another_digest(state: WorkflowState) -> None:
        assert state.archived_steps > 0
        state.inline_digest = "not what the instance computed"

    await pair.change_stored_state(another_digest)
    reads, before = pair.kv.many_reads, pair.executors[1].replayed_steps
    await pair.result(12, engine=1)  # step 13, on B, whose instance ran step 11
    assert pair.kv.many_reads > reads
    # one step caught up and refused, then steps 0 to 12 on a new instance
    assert pair.executors[1].replayed_steps - before == 1 + 13
    await pair.turns(range(13, N))
    assert pair.outcome() == EXPECTED
