from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from typing import Protocol

import pytest
from pydantic import BaseModel

from infinitic.common import method_signature, pack, unpack
from infinitic.exceptions import InvalidPayloadError, UnknownMethodError


class Kind(enum.Enum):
    A = "a"
    B = "b"


class Model(BaseModel):
    name: str
    size: int = 0


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Api(Protocol):
    async def many(
        self,
        m: Model,
        p: Point,
        k: Kind,
        when: dt.datetime,
        ref: uuid.UUID,
        items: list[Model],
        by_name: dict[str, Point],
        maybe: int | None = None,
    ) -> dict[str, Model]: ...

    async def simple(self, n: int, s: str = "x") -> None: ...


def sig(method: str):  # type: ignore[no-untyped-def]
    return method_signature(Api, method, "service", "Api")


def test_every_supported_type_round_trips_through_msgpack() -> None:
    s = sig("many")
    args = (
        Model(name="m", size=2),
        Point(1.5, -2.0),
        Kind.B,
        dt.datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
        uuid.uuid4(),
        [Model(name="a"), Model(name="b")],
        {"o": Point(0, 0)},
        None,
    )
    dumped = s.dump_args(args, {})
    wire = unpack(pack(dumped))
    assert tuple(s.load_args(wire)) == args
    result = {"r": Model(name="r")}
    assert s.load_result(unpack(pack(s.dump_result(result)))) == result


def test_keyword_arguments_and_defaults_are_bound() -> None:
    s = sig("simple")
    assert s.dump_args((), {"n": 3}) == [3, "x"]
    assert s.dump_args((4, "y"), {}) == [4, "y"]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("3",), {}, "service Api, method simple, parameter 'n': expected int, got str '3'"),
        ((1.5,), {}, "parameter 'n'"),
        ((), {}, "missing a required argument: 'n'"),
        ((1,), {"other": 2}, "unexpected keyword argument 'other'"),
        ((1, 2), {}, "parameter 's'"),
    ],
)
def test_wrong_arguments_are_refused_naming_the_parameter(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidPayloadError, match=message.replace("(", r"\(")):
        sig("simple").dump_args(args, kwargs)


def test_a_dict_is_accepted_for_a_model_and_validated() -> None:
    s = sig("many")
    base = [{"name": "m"}, {"x": 1, "y": 2}, "a", "2026-01-01T00:00:00Z", str(uuid.uuid4()), [], {}]
    assert s.dump_args(base, {})[0] == {"name": "m", "size": 0}
    with pytest.raises(InvalidPayloadError, match="parameter 'm'"):
        s.dump_args([{"nom": "m"}, *base[1:]], {})


def test_received_values_that_do_not_fit_are_refused() -> None:
    with pytest.raises(InvalidPayloadError, match="parameter 'n'"):
        sig("simple").load_args(["not a number", "x"])
    with pytest.raises(InvalidPayloadError, match="expected 2 arguments, got 1"):
        sig("simple").load_args([1])


def test_unknown_methods_are_named() -> None:
    with pytest.raises(UnknownMethodError, match="service Api has no method 'nope'"):
        method_signature(Api, "nope", "service", "Api")
