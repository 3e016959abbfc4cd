"""The label contract, read through `parse_event`: a malformed label is refused with the field at fault."""

import json
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from fraudwatch.domain.events import parse_event
from fraudwatch.domain.label import LABEL_FIELDS, Label
from fraudwatch.domain.transaction import MAX_AGE_SECONDS, MAX_FUTURE_SKEW_SECONDS, MAX_ID_CHARS, Transaction
from fraudwatch.errors import InvalidRecordError
from infra.events import label_body
from tests.unit.test_transaction import VALID as VALID_TRANSACTION

VALID = label_body("tx-00000001", "merch-00001", True, "2026-11-30T23:15:00+01:00")
RECEIVED = 1_796_079_600.0  # 2026-11-30T23:00:00Z, 45 minutes after VALID's labelled_at
TRANSACTION = {**VALID_TRANSACTION, "transaction_id": "tx-00000002"}
DROP = object()


def encode(**changes: object) -> bytes:
    return encode_from(VALID, **changes)


def encode_from(base: Mapping[str, object], **changes: object) -> bytes:
    record = {**base, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not DROP}).encode()


def refused(data: bytes, received_at: float | None = RECEIVED) -> InvalidRecordError:
    with pytest.raises(InvalidRecordError) as caught:
        parse_event(data, received_at=received_at)
    return caught.value


def test_a_valid_label_parses_with_when_it_became_known():
    label = parse_event(encode(note="extra keys are ignored"), received_at=RECEIVED)
    assert label == Label(
        transaction_id="tx-00000001",
        merchant_id="merch-00001",
        is_fraud=True,
        labelled_at="2026-11-30T23:15:00+01:00",
        epoch=RECEIVED - 45 * 60,
    )


def test_a_genuine_label_and_a_z_suffix_are_accepted():
    label = parse_event(encode(is_fraud=False, labelled_at="2026-11-30T22:00:00Z"), received_at=RECEIVED)
    assert isinstance(label, Label)
    assert label.is_fraud is False
    assert label.epoch == RECEIVED - 3600


@pytest.mark.parametrize("field", LABEL_FIELDS)
def test_each_missing_field_is_named(field: str):
    error = refused(encode(**{field: DROP}))
    assert (error.field, error.reason) == (field, "missing")


@pytest.mark.parametrize("value", [1, 0, "true", "false", None, [True]], ids=repr)
def test_is_fraud_must_be_a_json_boolean(value: object):
    assert refused(encode(is_fraud=value)).field == "is_fraud"


BAD_IDS = {
    "transaction_id empty": ("transaction_id", ""),
    "transaction_id with a space": ("transaction_id", "tx 1"),
    "transaction_id a number": ("transaction_id", 17),
    "transaction_id leading space": ("transaction_id", " tx-1"),
    "transaction_id lone surrogate": ("transaction_id", "tx-\ud800"),
    "merchant_id too long": ("merchant_id", "m" * (MAX_ID_CHARS + 1)),
    "merchant_id null": ("merchant_id", None),
    "merchant_id control character": ("merchant_id", "merch\n1"),
    "merchant_id only whitespace": ("merchant_id", " \u3000 "),
    "merchant_id format character": ("merchant_id", "merch\u200d1"),
}


@pytest.mark.parametrize(("field", "value"), BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_ids_are_named(field: str, value: object):
    assert refused(encode(**{field: value})).field == field


def test_ids_in_any_script_and_of_the_longest_length_are_accepted():
    label = parse_event(
        encode(merchant_id="café-Zürich-東京", transaction_id="t" * MAX_ID_CHARS), received_at=RECEIVED
    )
    assert isinstance(label, Label)
    assert label.merchant_id == "café-Zürich-東京"
    assert label.applied_id == "t" * MAX_ID_CHARS + ":fraud"


@pytest.mark.parametrize("field", [*LABEL_FIELDS, "event"])
def test_a_key_twice_is_refused_on_that_key(field: str):
    data = encode()[:-1] + f", {json.dumps(field)}: {json.dumps(VALID[field])}}}".encode()
    error = refused(data)
    assert (error.field, error.reason) == (field, "appears more than once in one JSON object")


BAD_TIMES = {
    "without offset": "2026-11-30T22:15:00",
    "not ISO 8601": "yesterday",
    "a number": 1796079600,
    "more than an hour ahead of arrival": "2026-12-01T00:00:01+00:00",
    "more than 7 days before arrival": "2026-11-23T22:59:59+00:00",
    "year 9999, 23:59 behind UTC": "9999-12-31T23:59:59.999999-23:59",
    "year 1, 23:59 ahead of UTC": "0001-01-01T00:00:00+23:59",
    "a lone surrogate": "2026-11-30T22:15:00\udfffZ",
    "null": None,
    "an object": {"at": "2026-11-30T22:15:00Z"},
}


@pytest.mark.parametrize("value", BAD_TIMES.values(), ids=BAD_TIMES.keys())
def test_bad_labelled_at_is_named(value: object):
    assert refused(encode(labelled_at=value)).field == "labelled_at"


@pytest.mark.parametrize("offset", [MAX_FUTURE_SKEW_SECONDS, -MAX_AGE_SECONDS], ids=["1 h ahead", "7 d old"])
def test_labelled_at_exactly_at_a_bound_is_accepted(offset: float):
    stamp = datetime.fromtimestamp(RECEIVED + offset, UTC).isoformat()
    label = parse_event(encode(labelled_at=stamp), received_at=RECEIVED)
    assert isinstance(label, Label)
    assert label.epoch == RECEIVED + offset


def test_time_bounds_apply_only_with_an_arrival_time():
    old = encode(labelled_at="2020-01-01T00:00:00+00:00")
    assert isinstance(parse_event(old), Label)
    assert refused(old).field == "labelled_at"


@pytest.mark.parametrize("kind", ["refund", "Label", "LABEL", "", None, 1, ["label"]], ids=repr)
def test_an_unknown_event_is_refused_on_the_event_field(kind: object):
    assert refused(encode(event=kind)).field == "event"
    assert refused(encode_from(TRANSACTION, event=kind)).field == "event"


def test_a_transaction_with_or_without_the_event_field_is_a_transaction():
    tagged = parse_event(encode_from(TRANSACTION, event="transaction"), received_at=RECEIVED)
    untagged = parse_event(encode_from(TRANSACTION), received_at=RECEIVED)
    assert isinstance(tagged, Transaction)
    assert tagged == untagged


def test_the_event_field_decides_which_contract_applies():
    # A label without its tag is read as a transaction, and a tagged transaction as a label.
    assert refused(encode(event=DROP)).field == "user_id"
    assert refused(encode_from(TRANSACTION, event="label")).field == "is_fraud"
