"""Property-based tests of the received-message envelope: whatever properties and bytes any
publisher sets, wrapping a message never raises, an impossible transport property is reported
(and the message is then dead-lettered), and what handlers see is bounded."""

from __future__ import annotations

import math
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infinitic.transport_pulsar._envelope import (
    ATTEMPTS,
    DELIVER_AT,
    LATEST_MS,
    LOOK_AT,
    MOST_ATTEMPTS,
    ORIGIN_ID,
    ORIGIN_TIME,
    ORIGIN_TOPIC,
    PARKED_AT,
    Envelope,
)

# Derandomized, so the suite is repeatable; INFINITIC_FUZZ_RANDOM=1 draws new examples at each
# run and INFINITIC_FUZZ_EXAMPLES=20000 draws more.
FUZZ = settings(
    max_examples=int(os.environ.get("INFINITIC_FUZZ_EXAMPLES", "300")),
    derandomize=not os.environ.get("INFINITIC_FUZZ_RANDOM"),
    deadline=2000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

NUMERIC = [DELIVER_AT, ATTEMPTS, PARKED_AT, LOOK_AT, ORIGIN_TIME]
INTERNAL = [*NUMERIC, ORIGIN_ID, ORIGIN_TOPIC]
PREFIX = "x-infinitic-t-"


class FakeMessage:
    """What the envelope reads of a ``pulsar.Message``."""

    def __init__(self, properties: dict[str, str], data: bytes, key: str) -> None:
        self._properties = properties
        self._data = data
        self._key = key

    def properties(self) -> dict[str, str]:
        return self._properties

    def data(self) -> bytes:
        return self._data

    def partition_key(self) -> str:
        return self._key

    def redelivery_count(self) -> int:
        return 2

    def message_id(self) -> str:
        return "(1,2,-1,0)"

    def publish_timestamp(self) -> int:
        return 1_767_225_600_000


# Numbers as publishers could write them: signs, spaces, underscores, other scripts' digits,
# huge values, and plain garbage.
numbers = (
    st.integers(min_value=-(10**30), max_value=10**30).map(str)
    | st.integers(min_value=0, max_value=LATEST_MS).map(str)
    | st.sampled_from(["", " 5", "+5", "5_000", "٣", "1e3", "0x10", "-0", "9" * 5000])
    | st.text(max_size=30)
)
properties = st.dictionaries(
    st.sampled_from(INTERNAL) | st.text(max_size=20),
    numbers,
    max_size=10,
)


def _wrap(props: dict[str, str], data: bytes = b"x", key: str = "") -> Envelope:
    return Envelope.wrap(
        FakeMessage(props, data, key), object(), topic="persistent://t/n/w", from_retry_topic=False
    )


@FUZZ
@given(properties, st.binary(max_size=256), st.text(max_size=10))
def test_any_message_is_wrapped_and_bounded(props: dict[str, str], data: bytes, key: str) -> None:
    envelope = _wrap(props, data, key)
    seen = envelope.to_transport_message()
    assert not any(name.startswith(PREFIX) for name in seen.properties)
    assert seen.data == data
    assert seen.topic == "persistent://t/n/w"  # never the origin topic a publisher wrote
    assert math.isfinite(seen.publish_time)
    if envelope.problem is None:
        assert 0 <= envelope.attempts <= MOST_ATTEMPTS
        assert envelope.due_ms is None or 0 <= envelope.due_ms <= LATEST_MS
        assert 0 <= envelope.origin_time_ms <= LATEST_MS
        assert seen.redelivery_count >= 0
    else:
        assert any(name in envelope.problem for name in NUMERIC)
        assert envelope.attempts == 0
        assert envelope.due_ms is None
    republished = envelope.republish_properties(**{ATTEMPTS: "1"})
    assert republished[ORIGIN_ID] == envelope.origin_id
    assert republished[ATTEMPTS] == "1"


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(NUMERIC), st.integers(min_value=-(10**25), max_value=10**25), min_size=1
    )
)
def test_a_number_out_of_range_is_a_problem(numbers: dict[str, int]) -> None:
    bounds = {ATTEMPTS: MOST_ATTEMPTS}
    impossible = any(not 0 <= v <= bounds.get(k, LATEST_MS) for k, v in numbers.items())
    envelope = _wrap({k: str(v) for k, v in numbers.items()})
    assert (envelope.problem is not None) is impossible


@FUZZ
@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=10))
def test_user_properties_pass_through_untouched(props: dict[str, Any]) -> None:
    user = {k: v for k, v in props.items() if not k.startswith(PREFIX)}
    envelope = _wrap(props)
    assert envelope.to_transport_message().properties == user
