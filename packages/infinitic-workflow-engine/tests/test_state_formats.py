"""States of older formats are read (their command records typed), newer ones refused.

``fixtures/state_format2.json`` holds real bytes written before typed commands (state format 2,
history chunk format 1): a workflow of every command kind (``AllKinds`` below, with its first
steps in an archived chunk and an archive intent pending) and a bank wire (``Wire``), both
waiting on a receive. The workflows below are the code that wrote them.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any, Protocol

import pytest

from infinitic.client import InfiniticClient
from infinitic.common import (
    HISTORY_CHUNK_FORMAT,
    decode_history_chunk,
    merge_history,
    pack,
    read_workflow_state,
    unpack,
    workflow_state_key,
)
from infinitic.common.messages import (
    ChildWorkflowCommand,
    InlineCommand,
    MethodCommand,
    PatchCommand,
    ReceiveCommand,
    SignalCommand,
    TaskCommand,
    TimerCommand,
    is_legacy_command,
)
from infinitic.exceptions import CorruptedValueError
from infinitic.services import timeout
from infinitic.storage import InMemoryStorage
from infinitic.transport import InMemoryTransport
from infinitic.worker import InfiniticWorker
from infinitic.workflow_engine import decode_state, replay_history
from infinitic.workflow_engine._archive import with_archive
from infinitic.workflow_engine._state import STATE_FORMAT_VERSION, encode_state
from infinitic.workflows import (
    Channel,
    Workflow,
    dispatch,
    get_workflow_by_id,
    get_workflow_by_tag,
    inline,
    new_service,
    new_workflow,
    patched,
    timer,
)

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "state_format2.json").read_text())
STATE_KEY: str = FIXTURE["state_key"]
STATE = base64.b64decode(FIXTURE["state"])
CHUNKS = {k: base64.b64decode(v) for k, v in FIXTURE["chunks"].items()}
WIRE = base64.b64decode(FIXTURE["wire_state"])


class Bank(Protocol):
    async def withdraw(self, wire_id: str, account: str, amount: int) -> None: ...

    async def deposit(self, wire_id: str, account: str, amount: int) -> None: ...


class Emails(Protocol):
    @timeout(seconds=3600)
    async def send(self, wire_id: str, to: str, text: str) -> str: ...


class BankImpl:
    async def withdraw(self, wire_id: str, account: str, amount: int) -> None:
        return None

    async def deposit(self, wire_id: str, account: str, amount: int) -> None:
        return None


class EmailsImpl:
    async def send(self, wire_id: str, to: str, text: str) -> str:
        return f"mail-{wire_id}"


class Wire(Workflow):
    bank = new_service(Bank)
    emails = new_service(Emails)
    hold = Channel[str]()

    async def wire(self, wire_id: str, emitter: str, recipient: str, amount: int) -> str:
        await self.bank.withdraw(wire_id, emitter, amount)
        await self.bank.deposit(wire_id, recipient, amount)
        receipt = await self.emails.send(wire_id, emitter, f"you sent {amount} to {recipient}")
        await self.hold.receive(limit=1)
        return receipt


class Child(Workflow):
    async def double(self, x: int) -> int:
        return 2 * x


class Peer(Workflow):
    notes = Channel[str]()

    async def run(self) -> str:
        return await self.notes.receive(limit=1)

    async def ping(self, n: int) -> int:
        return n + 1


class AllKinds(Workflow):
    bank = new_service(Bank, tags=["t1"], meta={"m": b"\x00\x01"})
    emails = new_service(Emails)
    child = new_workflow(Child)
    go = Channel[str]()

    async def run(self, peer_id: str) -> str:
        await self.bank.withdraw("w1", "alice", 10)
        doubled = await self.child.double(3)
        peer = get_workflow_by_id(Peer, peer_id)
        pinged = await peer.ping(1)
        await peer.notes.send("hello")
        await dispatch(get_workflow_by_tag(Peer, "peers").ping, 2)
        await get_workflow_by_tag(Peer, "peers").notes.send("all")
        value = await inline(lambda: 42)
        if patched("p1"):
            value += 1
        await timer(0.01)
        got = await self.go.receive(limit=1)
        await self.emails.send("w1", "bob", "hi")
        await self.go.receive(limit=2, type=str, filter="$ == 'stop'")
        return f"{doubled}{pinged}{value}{got}"


def repacked(data: bytes, **changes: Any) -> bytes:
    raw = unpack(data)
    raw.update(changes)
    return pack(raw)


def test_the_state_format_is_4_and_chunks_3() -> None:
    assert STATE_FORMAT_VERSION == 4
    assert HISTORY_CHUNK_FORMAT == 3
    assert unpack(STATE)["format"] == 2
    assert {unpack(c)["format"] for c in CHUNKS.values()} == {1}


def test_a_format_2_state_is_read_with_typed_commands() -> None:
    state = decode_state(STATE_KEY, STATE)
    assert state.archive == list(CHUNKS)
    assert state.archiving is not None
    by_position = {c.position: c for c in state.commands.values()}
    assert sorted(by_position) == list(range(2, 12))  # 0 and 1 are in the archived chunk

    method = by_position[2]
    assert isinstance(method, MethodCommand)
    assert (method.workflow_name, method.method_name, method.args) == ("Peer", "ping", [1])
    assert method.target_workflow_id is not None
    assert method.tag is None
    assert (method.status, method.value, method.delivered_step) == ("completed", 2, 3)

    signal = by_position[3]
    assert isinstance(signal, SignalCommand)
    assert (signal.channel_name, signal.data, signal.type_names) == ("notes", "hello", ["str"])
    assert signal.target_workflow_id == method.target_workflow_id
    assert signal.tag is None

    by_tag = by_position[4]
    assert isinstance(by_tag, MethodCommand)
    assert (by_tag.tag, by_tag.target_workflow_id, by_tag.args) == ("peers", None, [2])
    assert by_tag.done_at_creation()

    broadcast = by_position[5]
    assert isinstance(broadcast, SignalCommand)
    assert (broadcast.tag, broadcast.target_workflow_id, broadcast.data) == ("peers", None, "all")

    inlined = by_position[6]
    assert isinstance(inlined, InlineCommand)
    assert (inlined.status, inlined.value) == ("completed", 42)

    patch = by_position[7]
    assert isinstance(patch, PatchCommand)
    assert patch.patch_id == "p1"
    assert patch.describe() == "patch p1"

    timer_ = by_position[8]
    assert isinstance(timer_, TimerCommand)
    assert timer_.due_at == timer_.value
    assert timer_.delivered_step == 4

    received = by_position[9]
    assert isinstance(received, ReceiveCommand)
    assert (received.channel_name, received.limit, received.received) == ("go", 1, 1)
    assert received.status == "completed"

    email = by_position[10]
    assert isinstance(email, TaskCommand)
    assert (email.service_name, email.method_name, email.value) == ("Emails", "send", "mail-w1")
    assert email.timeout_at is not None

    waiting = by_position[11]
    assert isinstance(waiting, ReceiveCommand)
    assert (waiting.limit, waiting.type_name, waiting.filter) == (2, "str", "$ == 'stop'")
    assert waiting.status == "ongoing"


def test_a_format_1_chunk_is_read_with_typed_commands() -> None:
    (key, data), *_ = CHUNKS.items()
    whole = with_archive(decode_state(STATE_KEY, STATE), [decode_history_chunk(key, data)])
    by_position = {c.position: c for c in whole.commands.values()}
    assert sorted(by_position) == list(range(12))
    task, child = by_position[0], by_position[1]
    assert isinstance(task, TaskCommand)
    assert (task.service_name, task.method_name, task.args) == (
        "Bank",
        "withdraw",
        ["w1", "alice", 10],
    )
    assert (task.tags, task.meta) == (["t1"], {"m": b"\x00\x01"})
    assert isinstance(child, ChildWorkflowCommand)
    assert (child.workflow_name, child.method_name, child.value) == ("Child", "double", 6)
    # the converted history is the one the code makes, arguments included
    assert replay_history(AllKinds, whole, check_mode="strict") == len(whole.steps) == 7


async def test_the_client_reads_an_older_state_with_typed_commands() -> None:
    storage = InMemoryStorage()
    await storage.key_value.put(STATE_KEY, STATE)
    for key, data in CHUNKS.items():
        await storage.key_value.put(key, data)
    _, name, workflow_id = STATE_KEY.split(":")
    plain = await read_workflow_state(storage.key_value, name, workflow_id)
    assert plain is not None
    commands = list(plain["commands"].values())
    assert len(commands) == 12
    assert all("name" not in c and "kind" in c for c in commands)
    assert [c["kind"] for c in sorted(commands, key=lambda c: c["position"])] == [
        "task",
        "workflow",
        "method",
        "signal",
        "method",
        "signal",
        "inline",
        "patch",
        "timer",
        "receive",
        "task",
        "receive",
    ]
    assert replay_history(AllKinds, plain) == 7


def test_a_history_saved_by_an_earlier_client_replays() -> None:
    chunk = unpack(next(iter(CHUNKS.values())))
    saved = merge_history(unpack(STATE)["state"], [chunk])  # as get_workflow_state gave it
    assert all(is_legacy_command(c) for c in saved["commands"].values())
    assert replay_history(AllKinds, saved, check_mode="strict") == 7


def test_a_format_1_state_is_read() -> None:
    raw = unpack(WIRE)
    for field in ("archive", "archived_steps", "archiving"):
        raw["state"].pop(field, None)
    state = decode_state("k", pack({**raw, "format": 1}))
    tasks = [c for c in state.commands.values() if isinstance(c, TaskCommand)]
    assert [t.method_name for t in tasks] == ["withdraw", "deposit", "send"]
    assert replay_history(Wire, state) == 4


def test_a_state_is_stored_again_in_format_4_with_the_same_content() -> None:
    state = decode_state(STATE_KEY, STATE)
    encoded = encode_state(state)
    assert unpack(encoded)["format"] == 4
    assert decode_state(STATE_KEY, encoded) == state
    assert all("name" not in c for c in unpack(encoded)["state"]["commands"].values())
    # format 3 is format 4 without retried outcomes: read as it is
    assert decode_state(STATE_KEY, repacked(encoded, format=3)) == state


@pytest.mark.parametrize("found", [5, 17])
async def test_a_newer_format_is_refused_naming_the_formats(found: int) -> None:
    newer = repacked(STATE, format=found)
    message = rf"state format {found} is newer than this version reads \(formats 1, 2, 3, 4\)"
    with pytest.raises(CorruptedValueError, match=message):
        decode_state(STATE_KEY, newer)
    storage = InMemoryStorage()
    await storage.key_value.put(STATE_KEY, newer)
    _, name, workflow_id = STATE_KEY.split(":")
    with pytest.raises(CorruptedValueError, match=message):
        await read_workflow_state(storage.key_value, name, workflow_id)
    (key, data), *_ = CHUNKS.items()
    with pytest.raises(
        CorruptedValueError, match=r"history chunk format 4 is newer .*formats 1, 2, 3"
    ):
        decode_history_chunk(key, repacked(data, format=4))


def test_an_unknown_format_or_command_is_refused() -> None:
    with pytest.raises(CorruptedValueError, match=r"unknown state format None"):
        decode_state("k", repacked(STATE, format=None))
    raw = unpack(STATE)
    some = next(iter(raw["state"]["commands"].values()))
    some["kind"] = "teleport"
    with pytest.raises(CorruptedValueError, match="unknown kind 'teleport'"):
        decode_state("k", pack(raw))
    raw = unpack(STATE)
    raw["state"]["commands"] = list(raw["state"]["commands"].values())
    with pytest.raises(CorruptedValueError, match="commands of this state are not a map"):
        decode_state("k", pack(raw))
    # a format-3 state holding a record of the old form is not misread
    with pytest.raises(CorruptedValueError, match="name"):
        decode_state("k", repacked(STATE, format=3))


async def test_the_engine_carries_on_older_states() -> None:
    transport, storage = InMemoryTransport(), InMemoryStorage()
    kv = storage.key_value
    await kv.put(STATE_KEY, STATE)
    for key, data in CHUNKS.items():
        await kv.put(key, data)
    wire_key = workflow_state_key("Wire", unpack(WIRE)["state"]["workflow_id"])
    await kv.put(wire_key, WIRE)
    worker = InfiniticWorker(transport=transport, storage=storage, history_chunk_steps=3)
    worker.add_service(BankImpl(), interface=Bank)
    worker.add_service(EmailsImpl(), interface=Emails)
    for workflow in (Wire, Child, Peer, AllKinds):
        worker.add_workflow(workflow)
    async with worker, InfiniticClient(transport=transport, storage=storage) as client:
        kinds = client.get_workflow_by_id(AllKinds, STATE_KEY.split(":")[2])
        await kinds.go.send("nope")  # filtered out, but stored: the planned chunk is written
        for _ in range(500):
            if len(kv.keys("workflow-history:AllKinds:")) == 2:
                break
            await asyncio.sleep(0.01)
        stored = await kv.get(STATE_KEY)
        assert stored is not None
        assert unpack(stored.value)["format"] == 4
        new_chunk = sorted(kv.keys("workflow-history:AllKinds:"))[-1]
        chunk = await kv.get(new_chunk)
        assert chunk is not None
        assert unpack(chunk.value)["format"] == HISTORY_CHUNK_FORMAT
        whole = await client.get_workflow_state(kinds)
        assert whole is not None
        assert len(whole["commands"]) == 12
        assert replay_history(AllKinds, whole, check_mode="strict") == 7
        await kinds.go.send("stop")
        await client.get_workflow_by_id(Wire, wire_key.split(":")[2]).hold.send("now")
        for _ in range(500):
            if not kv.keys():
                break
            await asyncio.sleep(0.01)
        assert kv.keys() == []  # both ended: their states and chunks are gone
