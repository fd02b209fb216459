"""Property-based tests of workflow state decoding: random bytes, and real stored states (of the
current format and of format 2, from ``fixtures/state_format2.json``) mutated byte by byte or
field by field, decode to a state or raise CorruptedValueError naming the key: never another
exception, never a hang (each example has a deadline)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infinitic.common import pack, unpack
from infinitic.exceptions import CorruptedValueError
from infinitic.workflow_engine import WorkflowState, decode_state, encode_state

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "state_format2.json").read_text())
KEY: str = FIXTURE["state_key"]
OLD_STATES = [base64.b64decode(FIXTURE["state"]), base64.b64decode(FIXTURE["wire_state"])]
# The same states written in the current format.
STATES = OLD_STATES + [encode_state(decode_state(KEY, data)) for data in OLD_STATES]

# Derandomized, so the suite is repeatable; INFINITIC_FUZZ_RANDOM=1 draws new examples at each
# run and INFINITIC_FUZZ_EXAMPLES=20000 draws more. No example database in the repository; a
# deadline per example catches hangs.
FUZZ = settings(
    max_examples=int(os.environ.get("INFINITIC_FUZZ_EXAMPLES", "200")),
    derandomize=not os.environ.get("INFINITIC_FUZZ_RANDOM"),
    deadline=2000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

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
edits = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)),
    min_size=1,
    max_size=6,
)


def _decodes_or_refuses(data: bytes) -> WorkflowState | None:
    try:
        return decode_state(KEY, data)
    except CorruptedValueError as e:
        if KEY not in str(e):
            raise AssertionError(f"the error does not name the key: {e}") from e
        return None


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


def test_the_seeds_decode() -> None:
    for data in STATES:
        assert isinstance(decode_state(KEY, data), WorkflowState)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused_or_decode(data: bytes) -> None:
    _decodes_or_refuses(data)


@FUZZ
@given(st.sampled_from(STATES), edits)
def test_a_mutated_state_is_refused_or_decodes(
    seed: bytes, changes: list[tuple[int, int, int]]
) -> None:
    decoded = _decodes_or_refuses(_mutate(seed, changes))
    if decoded is not None:
        # whatever was decoded is a state the engine can store again
        assert isinstance(decode_state(KEY, encode_state(decoded)), WorkflowState)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a part of a decoded msgpack value (the root excluded)."""
    found: list[tuple[Any, ...]] = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in items:
        found.append((*path, key))
        found.extend(_paths(child, (*path, key)))
    return found


@FUZZ
@given(st.data())
def test_a_state_with_a_part_replaced_is_refused_or_decodes(data: st.DataObject) -> None:
    raw = unpack(data.draw(st.sampled_from(STATES)))
    path = data.draw(st.sampled_from(_paths(raw)))
    parent = raw
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(values)
    _decodes_or_refuses(pack(raw))


def test_an_old_command_whose_tags_are_not_a_list_is_refused() -> None:
    # Found by the property above with INFINITIC_FUZZ_EXAMPLES=3000.
    raw = unpack(OLD_STATES[0])
    method = next(c for c in raw["state"]["commands"].values() if c.get("tags"))
    method["tags"] = {"": None}
    assert _decodes_or_refuses(pack(raw)) is None
