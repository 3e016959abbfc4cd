"""Records are parsed by orjson when that cannot differ from the standard library's parse, the contract's
reference (duplicate keys refused, integers of any size, NaN read): the two are compared on flat
objects built to hit every difference between them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudwatch.domain.transaction import _plain_object, decode_payload
from fraudwatch.errors import InvalidRecordError

KEYS = st.sampled_from(['"amount"', '"user_id"', '"a"', '"\\u0061"', '"é"', '"x:y"'])
VALUES = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False).map(repr).filter(lambda text: "inf" not in text),
    st.sampled_from(
        ["NaN", "Infinity", "-Infinity", "true", "false", "null", "1e400", "-0", "0.0e-400", '"\\ud800"']
    ),
    st.text(st.characters(exclude_characters='"\\\\', exclude_categories=["Cs", "Cc"]), max_size=8).map(
        lambda text: f'"{text}"'
    ),
    st.sampled_from(['"a,b"', '"k":', '"{"', '"[]"', '"2026-12-06T03:30:09+00:00"', '"\\"quoted\\""', "[1]"]),
)
SPACE = st.sampled_from(["", " ", "\n", "\t "])


@st.composite
def flat_objects(draw: st.DrawFn) -> bytes:
    members = draw(st.lists(st.tuples(KEYS, VALUES, SPACE), max_size=6))
    body = ",".join(f"{space}{key}{space}:{space}{value}" for key, value, space in members)
    return f"{{{body}}}{draw(SPACE)}{draw(st.sampled_from(['', '', 'x', '}']))}".encode()


def reference(data: bytes) -> dict[str, object] | None:
    """The standard library's reading with duplicate keys refused; None when it is not one object."""

    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        if len({key for key, _ in pairs}) != len(pairs):
            raise ValueError("duplicate key")
        return dict(pairs)

    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=unique)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@settings(max_examples=1500, deadline=None)
@given(flat_objects())
def test_what_orjson_reads_is_what_the_standard_library_reads(data: bytes) -> None:
    fast = _plain_object(data)
    if fast is not None:
        expected = reference(data)
        assert expected is not None, "orjson took a record the standard library refuses"
        assert fast == expected
        assert [type(v) for v in fast.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b'{"amount": 1, "amount": 2}', "amount"),  # orjson alone would keep 2
        (b'{"amount": "1", "amount": 2}', "amount"),
    ],
)
def test_a_repeated_key_is_refused_on_the_fast_path_too(data: bytes, field: str) -> None:
    with pytest.raises(InvalidRecordError) as raised:
        decode_payload(data)
    assert raised.value.field == field


def test_the_usual_record_takes_the_fast_path_and_a_big_integer_does_not() -> None:
    usual = b'{"transaction_id": "tx-1", "amount": 12.5, "timestamp": "2026-12-06T03:30:09+00:00"}'
    assert _plain_object(usual) == json.loads(usual)
    big = b'{"amount": 123456789012345678901234567890}'
    assert _plain_object(big) is None
    assert decode_payload(big) == {"amount": 123456789012345678901234567890}
