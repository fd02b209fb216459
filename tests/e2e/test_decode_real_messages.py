"""Property-based tests of message decoding over real messages: every message published while
children, timers, signals, parallel tasks and a failing task run is recorded, then mutated byte
by byte or field by field. Decoding gives a message or MessageDecodeError, never another
exception, never a hang (each example has a deadline)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infinitic.client import InfiniticClient
from infinitic.common import decode_message, pack, unpack
from infinitic.common.messages import Message
from infinitic.exceptions import MessageDecodeError
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker

from .language import Errors, Factorial, Parallel, Signals, Timers, Tools, ToolsImpl

# Derandomized, so the suite is repeatable; INFINITIC_FUZZ_RANDOM=1 draws new examples at each
# run and INFINITIC_FUZZ_EXAMPLES=20000 draws more.
FUZZ = settings(
    max_examples=int(os.environ.get("INFINITIC_FUZZ_EXAMPLES", "300")),
    derandomize=not os.environ.get("INFINITIC_FUZZ_RANDOM"),
    deadline=2000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class RecordingTransport(InMemoryTransport):
    """The in-memory transport, keeping the bytes of every message published."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[bytes] = []

    async def publish(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None = None,
        deliver_at: float | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self.published.append(bytes(data))
        await super().publish(topic, data, key=key, deliver_at=deliver_at, properties=properties)


async def _record() -> list[bytes]:
    transport = RecordingTransport()
    worker = InfiniticWorker(
        transport=transport,
        storage=InMemoryStorage(),
        inline_workflow_tasks=False,  # workflow tasks and their outcomes cross the transport too
        redelivery_delay=0.01,
    )
    worker.add_service(ToolsImpl(), interface=Tools)
    for workflow in (Errors, Factorial, Parallel, Signals, Timers):
        worker.add_workflow(workflow)
    async with worker, InfiniticClient(transport=transport) as client:
        assert await client.new_workflow(Factorial).compute(3) == 6
        await client.new_workflow(Parallel).many(3)
        await client.new_workflow(Timers).durations()
        deferred = await client.dispatch(client.new_workflow(Signals).three)
        running = client.get_workflow_by_id(Signals, deferred.id)
        await asyncio.sleep(0.1)
        for note in ["a", "b", "c"]:
            await running.notes.send(note)
        assert await deferred == ["a", "b", "c"]
        failure = await client.new_workflow(Errors).catch_task_failure()
        assert failure[:2] == ["Tools", "fail"]
    return transport.published


@pytest.fixture(scope="module")
def recorded() -> list[bytes]:
    return asyncio.run(_record())


@pytest.fixture(scope="module")
def kinds(recorded: list[bytes]) -> set[str]:
    return {type(decode_message(data)).__name__ for data in recorded}


def test_the_recording_holds_many_kinds_of_message(kinds: set[str]) -> None:
    expected = {"DispatchWorkflow", "ExecuteTask", "ExecuteWorkflowTask", "WorkflowTaskCompleted"}
    assert expected <= kinds
    assert len(kinds) >= 6


def _decodes_or_refuses(data: bytes) -> Message | None:
    try:
        return decode_message(data)
    except MessageDecodeError:
        return None


edits = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)),
    min_size=1,
    max_size=6,
)


def _mutate(data: bytes, changes: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 flips, 1 inserts, 2 deletes, 3 truncates."""
    out = bytearray(data)
    for kind, position, byte in changes:
        if not out:
            break
        i = position % len(out)
        if kind == 0:
            out[i] ^= byte or 1
        elif kind == 1:
            out.insert(i, byte)
        elif kind == 2:
            del out[i]
        else:
            del out[i:]
    return bytes(out)


@FUZZ
@given(st.data(), edits)
def test_a_real_message_mutated_byte_by_byte_decodes_or_is_refused(
    recorded: list[bytes], data: st.DataObject, changes: list[tuple[int, int, int]]
) -> None:
    _decodes_or_refuses(_mutate(data.draw(st.sampled_from(recorded)), changes))


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=16)
    | st.binary(max_size=16)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a part of a decoded msgpack value (the root excluded)."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        items = ()
    for key, child in items:
        found.append((*path, key))
        found.extend(_paths(child, (*path, key)))
    return found


@FUZZ
@given(st.data())
def test_a_real_message_with_a_part_replaced_or_removed_decodes_or_is_refused(
    recorded: list[bytes], data: st.DataObject
) -> None:
    raw = unpack(data.draw(st.sampled_from(recorded)))
    path = data.draw(st.sampled_from(_paths(raw)))
    parent = raw
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(values)
    _decodes_or_refuses(pack(raw))
