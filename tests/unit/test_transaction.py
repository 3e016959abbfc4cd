"""The transaction contract: every malformed record is refused with the field at fault, nothing valid is."""

import gzip
import json
import math
import random

import pytest

from fraudwatch.domain.events import MerchantEvent, parse_event
from fraudwatch.domain.transaction import (
    DYNAMODB_MIN_MAGNITUDE,
    FIELDS,
    ID_PATTERN,
    MAX_AGE_SECONDS,
    MAX_AMOUNT,
    MAX_ID_CHARS,
    MAX_JSON_DEPTH,
    MAX_PAYLOAD_BYTES,
    Transaction,
    id_problem,
    parse_transaction,
)
from fraudwatch.errors import InvalidRecordError
from infra.events import label_body

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


def with_raw(name: str, literal: str) -> bytes:
    """VALID with `name` set to a JSON literal json.dumps would never write (NaN, 400 digits, ...)."""
    return encode(**{name: DROP})[:-1] + f', "{name}": {literal}}}'.encode()


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


DROP = object()
ASTRAL = "\U0001f600"  # four bytes of UTF-8, two UTF-16 units


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
    "data after the object": (encode() + b" x", "payload"),
    "two objects": (encode() + encode(), "payload"),
    "gzip-compressed": (gzip.compress(encode()), "payload"),
    "utf-8 byte-order mark": (b"\xef\xbb\xbf" + encode(), "payload"),
    "utf-16 byte-order mark": (b"\xff\xfe" + encode().decode().encode("utf-16-le"), "payload"),
    "utf-16 big-endian": (b"\xfe\xff" + encode().decode().encode("utf-16-be"), "payload"),
    "2,000 levels deep": (nested(2000).encode(), "payload"),
    "1,900 levels deep in an extra field": (with_raw("extra", nested(1900)), "payload"),
    "one level over the depth limit": (with_raw("extra", nested(MAX_JSON_DEPTH)), "payload"),
    "duplicate amount": (encode()[:-1] + b', "amount": 1.0}', "amount"),
    "duplicate extra field": (with_raw("note", '"a", "note": "b"'), "note"),
    "duplicate key in a nested object": (with_raw("device", '{"os": "ios", "os": "android"}'), "os"),
    "duplicate unprintable key": (with_raw("\\u0000", '1, "\\u0000": 2'), '"\\u0000"'),
    "missing transaction_id": (encode(transaction_id=DROP), "transaction_id"),
    "missing amount": (encode(amount=DROP), "amount"),
    "missing timestamp": (encode(timestamp=DROP), "timestamp"),
    "amount negative": (encode(amount=-5), "amount"),
    "amount NaN": (with_raw("amount", "NaN"), "amount"),
    "amount Infinity": (encode(amount=float("inf")), "amount"),
    "amount -Infinity": (with_raw("amount", "-Infinity"), "amount"),
    "amount huge": (encode(amount=1e12), "amount"),
    "amount overflow": (with_raw("amount", "1e400"), "amount"),
    "amount of 400 digits": (with_raw("amount", "9" * 400), "amount"),
    "amount of minus 400 digits": (with_raw("amount", "-" + "9" * 400), "amount"),
    "amount below DynamoDB's range": (encode(amount=1e-300), "amount"),
    "amount subnormal": (encode(amount=5e-324), "amount"),
    "amount string": (encode(amount="42.50"), "amount"),
    "amount bool": (encode(amount=True), "amount"),
    "amount false": (encode(amount=False), "amount"),
    "amount a list": (encode(amount=[42.5]), "amount"),
    "unknown currency": (encode(currency="XXX"), "currency"),
    "lowercase currency": (encode(currency="usd"), "currency"),
    "currency with a space": (encode(currency="USD "), "currency"),
    "timestamp not a date": (encode(timestamp="yesterday"), "timestamp"),
    "timestamp without offset": (encode(timestamp="2026-11-30T10:00:00"), "timestamp"),
    "timestamp a date only": (encode(timestamp="2026-11-30"), "timestamp"),
    "timestamp a number": (encode(timestamp=1796083200), "timestamp"),
    "timestamp null": (encode(timestamp=None), "timestamp"),
    "timestamp offset over 24 h": (encode(timestamp="2026-11-30T10:00:00+25:00"), "timestamp"),
    "timestamp hour 24": (encode(timestamp="2026-11-30T24:00:00Z"), "timestamp"),
    "timestamp lone surrogate": (encode(timestamp="2026-11-30T10:00:00\ud800Z"), "timestamp"),
    "timestamp far future": (encode(timestamp="2027-06-01T00:00:00+00:00"), "timestamp"),
    "timestamp far past": (encode(timestamp="2020-01-01T00:00:00+00:00"), "timestamp"),
    "timestamp year 9999": (encode(timestamp="9999-12-31T23:59:59.999999-23:59"), "timestamp"),
    "timestamp year 1": (encode(timestamp="0001-01-01T00:00:00+23:59"), "timestamp"),
    "user_id empty": (encode(user_id=""), "user_id"),
    "user_id too long": (encode(user_id="u" * (MAX_ID_CHARS + 1)), "user_id"),
    "user_id too long in astral characters": (encode(user_id=ASTRAL * (MAX_ID_CHARS + 1)), "user_id"),
    "user_id control character": (encode(user_id="user\n01"), "user_id"),
    "user_id tab": (encode(user_id="user\t01"), "user_id"),
    "user_id zero-width space": (encode(user_id="user\u200b01"), "user_id"),
    "user_id right-to-left override": (encode(user_id="user\u202e10"), "user_id"),
    "user_id no-break space": (encode(user_id="user\u00a001"), "user_id"),
    "user_id lone surrogate": (encode(user_id="user-\udc00"), "user_id"),
    "user_id only spaces": (encode(user_id="   "), "user_id"),
    "user_id ideographic space only": (encode(user_id="\u3000"), "user_id"),
    "user_id leading space": (encode(user_id=" user-01"), "user_id"),
    "user_id trailing space": (encode(user_id="user-01 "), "user_id"),
    "merchant_id a number": (encode(merchant_id=17), "merchant_id"),
    "merchant_id a list": (encode(merchant_id=["m-1"]), "merchant_id"),
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


REASONS = {
    "gzip-compressed": "gzip",
    "utf-8 byte-order mark": "byte-order mark",
    "utf-16 byte-order mark": "byte-order mark",
    "2,000 levels deep": f"{MAX_JSON_DEPTH} levels",
    "1,900 levels deep in an extra field": f"{MAX_JSON_DEPTH} levels",
    "duplicate amount": "more than once",
    "amount of 400 digits": f"{MAX_AMOUNT:,.0f}",
    "amount below DynamoDB's range": "DynamoDB",
    "amount subnormal": "DynamoDB",
    "user_id too long": f"{MAX_ID_CHARS}",
    "user_id lone surrogate": "U+DC00",
    "user_id only spaces": "whitespace",
    "user_id leading space": "leading or trailing whitespace",
    "transaction_id with spaces": "a space at position 2",
}


@pytest.mark.parametrize(("kind", "words"), REASONS.items(), ids=REASONS.keys())
def test_the_reason_says_what_is_wrong(kind: str, words: str):
    with pytest.raises(InvalidRecordError) as caught:
        parse_transaction(MALFORMED[kind][0], received_at=RECEIVED)
    assert words in caught.value.reason


VALID_EDGES = {
    "ids in any script": encode(user_id="café-Zürich-東京", merchant_id="مقهى-٤٢", transaction_id="τ-1"),
    "ids of the longest length, astral characters": encode(user_id=ASTRAL * MAX_ID_CHARS),
    "ids with brackets and quotes": encode(merchant_id='m{"[1]"}'),
    "ids written as JSON escapes": encode()[:-1].replace(b'"user-000001"', b'"caf\\u00e9"') + b"}",
    "nested extra fields at the depth limit": with_raw("extra", nested(MAX_JSON_DEPTH - 1)),
    "many shallow brackets": with_raw("items", "[" + ", ".join(["{}"] * 100) + "]"),
    "brackets inside strings": encode(note="[" * 200 + '\\"{' * 50),
    "whitespace around the object": b" \n\t" + encode() + b"\r\n ",
    "NaN in an extra field": with_raw("score", "NaN"),
    "the smallest amount DynamoDB stores": encode(amount=DYNAMODB_MIN_MAGNITUDE),
    "a zero amount (a card check)": encode(amount=0),
    "minus zero": encode(amount=-0.0),
    "an amount underflowing to 0": with_raw("amount", "1e-400"),
    "the largest amount": encode(amount=MAX_AMOUNT),
    "the largest amount as an integer": with_raw("amount", str(int(MAX_AMOUNT))),
    "an amount of more digits than DynamoDB keeps": with_raw("amount", "12.3" + "4" * 50),
    "a payload at the size limit": encode(note="x" * (MAX_PAYLOAD_BYTES - len(encode(note="")))),
    "timestamp with nanoseconds": encode(timestamp="2026-11-30T22:15:00.123456789Z"),
    "timestamp with a space and an odd offset": encode(timestamp="2026-11-30 23:30:00+00:45"),
}


@pytest.mark.parametrize("payload", VALID_EDGES.values(), ids=VALID_EDGES.keys())
def test_valid_edge_cases_are_accepted(payload: bytes):
    tx = parse_transaction(payload, received_at=RECEIVED)
    assert tx.amount >= 0
    assert math.copysign(1.0, tx.amount) == 1.0  # -0.0 is read as 0


def test_the_smallest_amount_is_stored_as_written_and_ids_read_as_decoded():
    assert parse_transaction(VALID_EDGES["the smallest amount DynamoDB stores"]).amount == 1e-130
    assert repr(parse_transaction(VALID_EDGES["the smallest amount DynamoDB stores"]).amount) == "1e-130"
    assert parse_transaction(VALID_EDGES["ids written as JSON escapes"]).user_id == "café"
    long_id = parse_transaction(VALID_EDGES["ids of the longest length, astral characters"]).user_id
    assert len(long_id) == MAX_ID_CHARS
    assert len(long_id.encode("utf-16-le")) // 2 <= 256  # Kinesis partition keys: 256 characters
    assert len(long_id.encode()) <= 2048  # DynamoDB partition keys: 2,048 bytes


@pytest.mark.parametrize(
    "value", ["tx-1", "A", "café", "東京", "x" * MAX_ID_CHARS, "a.b:c-d_e", "[x]", ASTRAL], ids=repr
)
def test_id_problem_accepts_printable_ids(value: str):
    assert id_problem(value) is None


def test_every_id_the_file_pattern_accepts_is_valid_on_the_stream():
    """training/io.py checks files with ID_PATTERN: it must never let through what the stream refuses."""
    rng = random.Random(3)
    alphabet = "azAZ09_.:- \t\n\u00e9\u200b\ud800" + ASTRAL
    for _ in range(2000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 70)))
        if ID_PATTERN.fullmatch(value):
            assert id_problem(value) is None, value


def test_time_bounds_apply_only_with_an_arrival_time():
    old = encode(timestamp="2020-01-01T00:00:00+00:00")
    assert parse_transaction(old).epoch < RECEIVED - MAX_AGE_SECONDS
    with pytest.raises(InvalidRecordError):
        parse_transaction(old, received_at=RECEIVED)


def outcome(
    data: bytes, received_at: float | None = RECEIVED
) -> Transaction | MerchantEvent | InvalidRecordError:
    """What `parse_event` makes of `data`: a record, or the InvalidRecordError it raised (anything else
    propagates and fails the test)."""
    try:
        return parse_event(data, received_at=received_at)
    except InvalidRecordError as exc:
        return exc


EXTREME_TIMES = [
    f"{date}T{time}{offset}"
    for date in ("0001-01-01", "0001-01-02", "9999-12-30", "9999-12-31", "2026-11-30")
    for time in ("00:00:00", "23:59:59.999999", "12:00")
    for offset in ("Z", "+23:59", "-23:59", "+23:59:59.999999", "-23:59:59.999999", "+00:00")
]


def test_any_extreme_instant_is_read_offline_and_refused_on_the_stream_unless_recent():
    for stamp in EXTREME_TIMES:
        offline = outcome(encode(timestamp=stamp), received_at=None)
        assert isinstance(offline, Transaction), stamp  # every aware ISO 8601 instant has an epoch
        assert math.isfinite(offline.epoch)
        streamed = outcome(encode(timestamp=stamp))
        if not stamp.startswith("2026-11-30"):
            assert isinstance(streamed, InvalidRecordError), stamp
            assert streamed.field == "timestamp"


ODD_VALUES: list[object] = [
    None,
    True,
    0,
    -1,
    10**400,
    1e308,
    5e-324,
    "",
    " ",
    "\x00",
    "\ud800",
    "x" * 3000,
    [],
    {},
    [[[[]]]],
    {"a": {"b": None}},
]


@pytest.mark.parametrize("field", [*FIELDS, "event", "extra"])
def test_any_json_value_in_any_field_is_read_or_refused_on_that_field(field: str):
    for value in ODD_VALUES:
        result = outcome(encode(**{field: value}))
        if isinstance(result, InvalidRecordError):
            assert result.field == field, value
            assert result.reason
        else:
            # No odd value is a valid id, amount, time or code, but for 0, a zero amount (a card check).
            assert field == "extra" or (field, value) == ("amount", 0), value


def test_random_damage_to_a_valid_record_is_read_or_refused_never_an_exception_of_another_kind():
    """Bytes flipped, cut, repeated or spliced in: parse_event answers InvalidRecordError or a record."""
    rng = random.Random(11)
    label = json.dumps(label_body("t", "m", True, "x")).encode()
    splices = [b"{", b"}", b"[", b"]", b'"', b"\\", b"\\u", b"\\ud800", b"\x00", b"\xff", b"\xed\xa0\x80"]
    splices += [b"1e999", b"-", b"NaN", b"9" * 400, b",", b":", b"\xef\xbb\xbf", b"\x1f\x8b", b"[" * 100]
    outcomes: dict[str, int] = {}
    for _ in range(4000):
        data = bytearray(rng.choice([encode(), label]))
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(data) + 1)
            action = rng.randrange(4)
            if action == 0:
                data[at:at] = rng.choice(splices)
            elif action == 1:
                del data[at : at + rng.randrange(1, 20)]
            elif action == 2 and at < len(data):
                data[at] = rng.randrange(256)
            else:
                data[at:at] = data[: rng.randrange(len(data) + 1)]
        result = outcome(bytes(data))
        if isinstance(result, InvalidRecordError):
            assert result.field
            assert result.reason
            outcomes[result.field] = outcomes.get(result.field, 0) + 1
        else:
            outcomes["read"] = outcomes.get("read", 0) + 1
    assert outcomes["payload"] > 1000  # the damage mostly breaks the JSON, but not only
    assert len(outcomes) > 5


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
