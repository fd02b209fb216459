"""Property-based tests of decoding: whatever bytes come from a topic or a store, decoding gives
a value or the project's clear error (MessageDecodeError, CorruptedValueError), never another
exception, and never hangs (each example has a deadline)."""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infinitic.common import (
    HISTORY_CHUNK_FORMAT,
    decode_history_chunk,
    decode_message,
    encode_message,
    pack,
    read_workflow_state,
    unpack,
    workflow_state_key,
)
from infinitic.common import messages as message_module
from infinitic.common.messages import ExecuteTask, Message, Requester
from infinitic.exceptions import CorruptedValueError, MessageDecodeError

# Derandomized, so the suite is repeatable; INFINITIC_FUZZ_RANDOM=1 draws new examples at each
# run and INFINITIC_FUZZ_EXAMPLES=20000 draws more. No example database in the repository; a
# deadline per example catches hangs.
FUZZ = settings(
    max_examples=int(os.environ.get("INFINITIC_FUZZ_EXAMPLES", "300")),
    derandomize=not os.environ.get("INFINITIC_FUZZ_RANDOM"),
    deadline=2000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

MESSAGE_TYPES: list[type[Message]] = [
    cls
    for cls in (getattr(message_module, name) for name in message_module.__all__)
    if isinstance(cls, type)
    and issubclass(cls, Message)
    and isinstance(getattr(cls, "TYPE", None), str)
]

SAMPLE = ExecuteTask(
    task_id="t-1",
    service_name="Bank",
    method_name="withdraw",
    method_args=[{"account": "alice", "amount": 30}, [1, 2.5, None, True]],
    requester=Requester.client("client-1"),
    meta={"k": b"\xff\x00"},
)

# msgpack values: what a forged body can hold.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _refusal(call: Any, kind: type[Exception]) -> Exception | None:
    """Run ``call``; return the ``kind`` error it raised, or None (other errors propagate)."""
    try:
        call()
    except kind as e:
        return e
    return None


def _decodes_or_refuses(data: bytes) -> Message | None:
    try:
        return decode_message(data)
    except MessageDecodeError:
        return None


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 flips, 1 inserts, 2 deletes, 3 truncates."""
    out = bytearray(data)
    for kind, position, byte in edits:
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


edits = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)),
    min_size=1,
    max_size=6,
)


@FUZZ
@given(st.binary(max_size=4096))
def test_unpack_of_random_bytes_gives_a_value_or_a_decode_error(data: bytes) -> None:
    error = _refusal(lambda: unpack(data), MessageDecodeError)
    assert error is None or str(error).startswith("not a msgpack value")


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_not_messages(data: bytes) -> None:
    _decodes_or_refuses(data)


@FUZZ
@given(edits)
def test_a_mutated_envelope_decodes_or_is_refused(changes: list[tuple[int, int, int]]) -> None:
    decoded = _decodes_or_refuses(_mutate(encode_message(SAMPLE), changes))
    assert decoded is None or isinstance(decoded, Message)


@FUZZ
@given(st.data())
def test_a_forged_body_of_any_message_type_decodes_or_is_refused(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(MESSAGE_TYPES))
    names = st.sampled_from(sorted(cls.model_fields)) | st.text(max_size=12)
    body = data.draw(st.dictionaries(names, values, max_size=10))
    envelope = {"v": message_module.ENVELOPE_VERSION, "t": cls.TYPE, "b": body}
    decoded = _decodes_or_refuses(pack(envelope))
    assert decoded is None or isinstance(decoded, cls)


@FUZZ
@given(st.data())
def test_a_valid_body_with_one_field_replaced_decodes_or_is_refused(data: st.DataObject) -> None:
    body = SAMPLE.model_dump(exclude_defaults=True)
    field = data.draw(st.sampled_from(sorted(body)))
    body[field] = data.draw(values)
    envelope = {"v": message_module.ENVELOPE_VERSION, "t": SAMPLE.TYPE, "b": body}
    decoded = _decodes_or_refuses(pack(envelope))
    assert decoded is None or isinstance(decoded, ExecuteTask)


@FUZZ
@given(values)
def test_any_envelope_shape_decodes_or_is_refused(envelope: Any) -> None:
    _decodes_or_refuses(pack(envelope))


def test_every_message_type_is_covered() -> None:
    assert len(MESSAGE_TYPES) >= 10
    assert ExecuteTask in MESSAGE_TYPES


# -- stored history and states ----------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4096) | values.map(pack))
def test_a_history_chunk_decodes_or_is_refused_naming_the_key(data: bytes) -> None:
    error = _refusal(lambda: decode_history_chunk("chunk-key", data), CorruptedValueError)
    assert error is None or "chunk-key" in str(error)


class _Stored:
    def __init__(self, value: bytes) -> None:
        self.value = value
        self.version = 1


class _Reader:
    """A storage holding ``values`` (key -> bytes): what ``read_workflow_state`` reads."""

    def __init__(self, values: dict[str, bytes]) -> None:
        self._values = values

    async def get(self, key: str) -> _Stored | None:
        value = self._values.get(key)
        return None if value is None else _Stored(value)

    async def get_many(self, keys: Any) -> dict[str, _Stored]:
        return {k: _Stored(self._values[k]) for k in keys if k in self._values}


def _read_state(values: dict[str, bytes]) -> dict[str, Any] | None:
    return asyncio.run(read_workflow_state(_Reader(values), "W", "id-1"))


STATE_KEY = workflow_state_key("W", "id-1")


@FUZZ
@given(st.binary(max_size=2048) | values.map(pack))
def test_a_stored_state_decodes_or_is_refused_naming_the_key(data: bytes) -> None:
    error = _refusal(lambda: _read_state({STATE_KEY: data}), CorruptedValueError)
    assert error is None or STATE_KEY in str(error)


# Stored states and chunks of a readable format whose fields have the wrong shape (these raised
# TypeError or KeyError once); the explicit examples are those cases. Formats 2 and 3 are read.
STATE_FORMATS = (2, 3)
STATE_FIELDS = st.sampled_from(["archive", "steps", "commands", "signals", "archived_steps"])
CHUNK_FIELDS = st.sampled_from(["steps", "commands", "signals"])


@FUZZ
@example(state={"archive": 5}, chunk={})
@example(state={"archive": ["c"], "steps": 5}, chunk={})
@example(state={"archive": ["c"]}, chunk={"commands": [1]})
@given(
    state=st.dictionaries(STATE_FIELDS, values, max_size=5),
    chunk=st.dictionaries(CHUNK_FIELDS, values, max_size=3),
)
def test_a_state_with_fields_of_the_wrong_shape_is_refused_naming_the_key(
    state: dict[str, Any], chunk: dict[str, Any]
) -> None:
    for version in STATE_FORMATS:
        stored = {
            STATE_KEY: pack({"format": version, "state": state}),
            "c": pack({"format": HISTORY_CHUNK_FORMAT, **chunk}),
        }
        error = _refusal(functools.partial(_read_state, stored), CorruptedValueError)
        assert error is None or STATE_KEY in str(error) or "'c'" in str(error)


@FUZZ
@example(chunk={"steps": 5})
@given(chunk=st.dictionaries(CHUNK_FIELDS, values, max_size=3))
def test_a_chunk_with_fields_of_the_wrong_shape_is_refused_naming_the_key(
    chunk: dict[str, Any],
) -> None:
    data = pack({"format": HISTORY_CHUNK_FORMAT, **chunk})
    error = _refusal(lambda: decode_history_chunk("chunk-key", data), CorruptedValueError)
    assert error is None or "chunk-key" in str(error)
