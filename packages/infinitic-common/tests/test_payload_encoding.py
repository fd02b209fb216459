"""Values msgpack cannot encode are refused with a payload error saying where and why."""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

import pytest
from pydantic import BaseModel

from infinitic.common import method_signature, pack, unpack
from infinitic.exceptions import InvalidPayloadError

LONE = "caf\udce9"  # a lone surrogate, as os.fsdecode makes of undecodable file names


class Labels(BaseModel):
    by_key: dict[str, int]


class Api(Protocol):
    async def count(self, n: int, label: str = "x") -> int: ...

    async def keyed(
        self, scores: dict[str, int], labels: Labels | None = None
    ) -> dict[str, int]: ...

    async def nested(self, items: list[dict[str, Any]]) -> Any: ...

    async def raw(self, data: bytes) -> bytes: ...


def sig(method: str):  # type: ignore[no-untyped-def]
    return method_signature(Api, method, "service", "Api")


@pytest.mark.parametrize("n", [2**64 - 1, -(2**63), 0, 2**63])
def test_integers_within_64_bits_are_accepted(n: int) -> None:
    assert unpack(pack(sig("count").dump_args((n,), {}))) == [n, "x"]


@pytest.mark.parametrize("n", [2**64, -(2**63) - 1, 10**30])
def test_an_integer_beyond_64_bits_names_the_parameter(n: int) -> None:
    with pytest.raises(InvalidPayloadError) as caught:
        sig("count").dump_args((n,), {})
    message = str(caught.value)
    assert message.startswith("service Api, method count, parameter 'n': cannot be encoded")
    assert f"the integer {n} (beyond 64 bits" in message


def test_a_lone_surrogate_names_the_parameter_and_the_position() -> None:
    with pytest.raises(InvalidPayloadError) as caught:
        sig("count").dump_args((1,), {"label": LONE})
    message = str(caught.value)
    assert "service Api, method count, parameter 'label': cannot be encoded" in message
    assert "lone surrogate '\\udce9' at index 3" in message


def test_the_path_inside_a_nested_argument_is_named() -> None:
    items = [{"ok": 1}, {"ok": [1, 2, {"deep": 2**70}]}]
    path = r"\[1\]\['ok'\]\[2\]\['deep'\]: the integer"
    with pytest.raises(InvalidPayloadError, match=r"parameter 'items'.*" + path):
        sig("nested").dump_args((items,), {})
    with pytest.raises(InvalidPayloadError, match=r"parameter 'items'.*\[0\]\['a'\]: a string"):
        sig("nested").dump_args(([{"a": LONE}],), {})


def test_bytes_that_are_not_utf8_name_the_parameter() -> None:
    expected = "method raw, parameter 'data': cannot be encoded"
    with pytest.raises(InvalidPayloadError, match=expected):
        sig("raw").dump_args((b"\xff\xfe",), {})


def test_a_return_value_that_cannot_be_encoded_is_named() -> None:
    with pytest.raises(
        InvalidPayloadError, match=r"service Api, method count, return value: cannot be encoded"
    ):
        sig("count").dump_result(2**64)
    with pytest.raises(InvalidPayloadError, match=r"method nested, return value.*\[0\]"):
        sig("nested").dump_result([LONE])


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (2**64, "the integer 18446744073709551616"),
        ({"a": [0, LONE]}, "['a'][1]: a string with the lone surrogate"),
        ([dt.date(2026, 1, 1)], "[0]: a value of type date (not a msgpack type)"),
        ({2**65: "x"}, "key 36893488147419103232: the integer"),
    ],
)
def test_pack_says_where_and_why(value: Any, where: str) -> None:
    with pytest.raises(InvalidPayloadError) as caught:
        pack(value)
    assert where in str(caught.value)


def test_pack_refuses_nesting_deeper_than_msgpack_allows() -> None:
    deep: list[Any] = []
    for _ in range(1023):
        deep = [deep]
    decoded, levels = unpack(pack(deep)), 0  # the deepest msgpack decodes
    while decoded:
        decoded, levels = decoded[0], levels + 1
    assert levels == 1023
    with pytest.raises(InvalidPayloadError, match="nested deeper than 1024 levels"):
        pack([[deep]])


def test_a_lone_surrogate_in_a_dict_key_is_refused_not_replaced() -> None:
    # pydantic's JSON dump writes U+FFFD for it: the key would change without a word.
    with pytest.raises(
        InvalidPayloadError,
        match=r"method keyed, parameter 'scores': cannot be encoded: key 'caf\\udce9': a string "
        r"with the lone surrogate",
    ):
        sig("keyed").dump_args(({LONE: 1},), {})
    with pytest.raises(
        InvalidPayloadError, match=r"parameter 'labels': cannot be encoded: \.by_key key 'caf"
    ):
        sig("keyed").dump_args(({"a": 1}, Labels(by_key={"ok": 1, LONE: 2})), {})
    with pytest.raises(InvalidPayloadError, match=r"method keyed, return value: .* key 'caf"):
        sig("keyed").dump_result({LONE: 1})


def test_a_real_replacement_character_is_not_refused() -> None:
    scores = {"caf\ufffd": 1}
    assert sig("keyed").dump_args((scores,), {}) == [scores, None]
    assert sig("keyed").dump_result(scores) == scores


def test_a_failed_pack_leaves_nothing_behind_for_the_next() -> None:
    """pack reuses its packers: one that failed half way starts the next value empty."""
    with pytest.raises(InvalidPayloadError):
        pack({"a": [1, "b", 2**70]})
    assert unpack(pack({"b": 1})) == {"b": 1}


def test_a_pack_that_packs_while_packing_gets_its_own_packer() -> None:
    """A mapping subclass whose ``items`` packs (Python code run by msgpack in the middle of a
    pack) does not share the outer pack's buffer."""

    class Packing(dict[str, Any]):
        def items(self):  # type: ignore[no-untyped-def, override]
            assert unpack(pack({"inner": [1, 2, 3]})) == {"inner": [1, 2, 3]}
            return super().items()

    value = {"outer": Packing(a=1), "tail": ["x", b"y", None, 1.5]}
    assert unpack(pack(value)) == {"outer": {"a": 1}, "tail": ["x", b"y", None, 1.5]}


def test_threads_pack_at_once_without_mixing_values() -> None:
    import threading

    errors: list[str] = []

    def run(n: int) -> None:
        for i in range(2000):
            value = {"thread": n, "i": i, "items": list(range(n))}
            if unpack(pack(value)) != value:
                errors.append(f"thread {n} value {i}")

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_large_value_leaves_no_large_buffer_behind() -> None:
    """A packer's buffer grows to the largest value it packed: one that packed a large value is
    not kept (a worker that once stored a 5 MB state would hold 5 MB more for good)."""
    import tracemalloc

    large = {"blob": b"x" * (5 * 2**20)}
    pack({"warm": 1})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert len(pack(large)) > 5 * 2**20
        assert unpack(pack({"small": 1})) == {"small": 1}
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 2**20 + 2**16  # at most a fresh packer's 1 MiB buffer
