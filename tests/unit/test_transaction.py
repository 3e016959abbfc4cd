"""The transaction contract: every malformed record is refused with the field at fault."""

import json

import pytest

from fraudwatch.domain.events import parse_event
from fraudwatch.domain.transaction import (
    MAX_AGE_SECONDS,
    MAX_PAYLOAD_BYTES,
    parse_transaction,
)
from fraudwatch.errors import InvalidRecordError

VALID = {
    "transaction_id": "tx-00000001",
    "user_id": "user-000001",
    "merchant_id": "merch-00001",
    "amount": 42.5,
    "currency": "EUR",
    "timestamp": "2026-11-30T23:15:00+01:00",
    "category": "grocery",
}
RECEIVED = 1_796_079_600.0  # 2026-11-30T23:00:00Z, 45 minutes after VALID's timestamp


def encode(**changes: object) -> bytes:
    record = {**VALID, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not DROP}).encode()


DROP = object()


def test_valid_record_parses_with_derived_time_fields():
    tx = parse_transaction(encode(extra_field="ignored"), received_at=RECEIVED)
    assert tx.transaction_id == "tx-00000001"
    assert tx.amount == 42.5
    assert tx.epoch == RECEIVED - 45 * 60
    assert tx.local_hour == 23  # the hour where the card was used, not UTC


def test_integer_amount_and_z_suffix_are_accepted():
    tx = parse_transaction(encode(amount=12, timestamp="2026-11-30T22:00:00Z"), received_at=RECEIVED)
    assert tx.amount == 12.0
    assert tx.local_hour == 22


MALFORMED = {
    "not json": (b"{not json", "payload"),
    "json array": (b"[1, 2]", "payload"),
    "json string": (b'"hello"', "payload"),
    "json null": (b"null", "payload"),
    "invalid utf-8": (b'{"amount": "\xff\xfe"}', "payload"),
    "empty payload": (b"", "payload"),
    "oversized": (encode(note="x" * MAX_PAYLOAD_BYTES), "payload"),
    "missing transaction_id": (encode(transaction_id=DROP), "transaction_id"),
    "missing amount": (encode(amount=DROP), "amount"),
    "missing timestamp": (encode(timestamp=DROP), "timestamp"),
    "amount zero": (encode(amount=0), "amount"),
    "amount negative": (encode(amount=-5), "amount"),
    "amount NaN": (
        b'{"transaction_id": "t1", "user_id": "u", "merchant_id": "m", "amount": NaN, '
        b'"currency": "USD", "timestamp": "2026-11-30T10:00:00Z", "category": "fuel"}',
        "amount",
    ),
    "amount Infinity": (encode(amount=float("inf")), "amount"),
    "amount huge": (encode(amount=1e12), "amount"),
    "amount overflow": (encode(amount=DROP)[:-1] + b', "amount": 1e400}', "amount"),
    "amount string": (encode(amount="42.50"), "amount"),
    "amount bool": (encode(amount=True), "amount"),
    "unknown currency": (encode(currency="XXX"), "currency"),
    "lowercase currency": (encode(currency="usd"), "currency"),
    "timestamp not a date": (encode(timestamp="yesterday"), "timestamp"),
    "timestamp without offset": (encode(timestamp="2026-11-30T10:00:00"), "timestamp"),
    "timestamp a number": (encode(timestamp=1796083200), "timestamp"),
    "timestamp far future": (encode(timestamp="2027-06-01T00:00:00+00:00"), "timestamp"),
    "timestamp far past": (encode(timestamp="2020-01-01T00:00:00+00:00"), "timestamp"),
    "user_id empty": (encode(user_id=""), "user_id"),
    "user_id too long": (encode(user_id="u" * 65), "user_id"),
    "user_id control character": (encode(user_id="user\n01"), "user_id"),
    "merchant_id a number": (encode(merchant_id=17), "merchant_id"),
    "transaction_id with spaces": (encode(transaction_id="tx 1"), "transaction_id"),
    "category uppercase": (encode(category="Grocery"), "category"),
    "category null": (encode(category=None), "category"),
}


@pytest.mark.parametrize(("payload", "field"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_record_names_its_field(payload: bytes, field: str):
    with pytest.raises(InvalidRecordError) as caught:
        parse_transaction(payload, received_at=RECEIVED)
    assert caught.value.field == field
    assert caught.value.reason
    assert str(caught.value).startswith(f"{field}: ")


def test_time_bounds_apply_only_with_an_arrival_time():
    old = encode(timestamp="2020-01-01T00:00:00+00:00")
    assert parse_transaction(old).epoch < RECEIVED - MAX_AGE_SECONDS
    with pytest.raises(InvalidRecordError):
        parse_transaction(old, received_at=RECEIVED)


@pytest.mark.parametrize(("payload", "field"), MALFORMED.values(), ids=MALFORMED.keys())
def test_the_stream_parser_refuses_a_malformed_transaction_for_the_same_reason(payload: bytes, field: str):
    """`parse_event` reads records of either kind; for a transaction it says what `parse_transaction` says."""
    with pytest.raises(InvalidRecordError) as direct:
        parse_transaction(payload, received_at=RECEIVED)
    with pytest.raises(InvalidRecordError) as streamed:
        parse_event(payload, received_at=RECEIVED)
    assert streamed.value.field == field
    assert streamed.value.reason == direct.value.reason


def test_the_stream_parser_reads_a_valid_transaction_as_parse_transaction_does():
    assert parse_event(encode(), received_at=RECEIVED) == parse_transaction(encode(), received_at=RECEIVED)
