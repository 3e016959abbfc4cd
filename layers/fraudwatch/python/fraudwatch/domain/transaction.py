"""The transaction contract: parsing and validating one record of the stream.

Whatever a producer puts on the stream, parsing it either returns a record or raises
InvalidRecordError naming the field at fault and the reason: the record is then quarantined and never
retried. Any other exception would fail the whole Kinesis batch, so none may escape from here.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import NamedTuple

import orjson

from fraudwatch.errors import InvalidRecordError

FIELDS = ("transaction_id", "user_id", "merchant_id", "amount", "currency", "timestamp", "category")

MAX_PAYLOAD_BYTES = 4096
MAX_JSON_DEPTH = 64
"""Objects and arrays nested in a record, counting the record itself (System.Text.Json's default).

Checked before parsing: the standard library's parser recurses once per level and raises
RecursionError (somewhere near 1,500 levels on 3.12, at another depth on other versions) rather
than a JSON error. A bound of our own gives one answer on every Python version and call stack.
"""
MAX_AMOUNT = 1_000_000.0
MIN_AMOUNT = 0.0
"""Zero is an amount: card checks authorise 0, and a run of them is a card-testing signal."""
AMOUNT_RULE = "must not be negative"
MAX_FUTURE_SKEW_SECONDS = 3600.0
MAX_AGE_SECONDS = 7 * 86400.0

MAX_ID_CHARS = 128
"""Characters (code points) in an id. Ids are partition keys: Kinesis allows 256 characters (128 code
points are at most 256 UTF-16 units) and DynamoDB 2,048 bytes (128 code points are at most 512 bytes of
UTF-8)."""
ID_RULE = f"ids are 1-{MAX_ID_CHARS} printable characters without spaces"
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
"""The ASCII ids the stream accepted before issue 11: every id it matches is valid on the stream, so
`training/io.py` matches it vectorised and asks `id_problem`, the one rule, only about the others."""
CATEGORY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")

DYNAMODB_MIN_MAGNITUDE = 1e-130
DYNAMODB_MAX_MAGNITUDE = 1e126
"""DynamoDB stores 0 and numbers of magnitude 1e-130 to below 1e126 (and 38 significant digits, which
a float's repr, at most 17 digits, never exceeds)."""

CURRENCIES = frozenset(
    {
        "AED",
        "ARS",
        "AUD",
        "BRL",
        "CAD",
        "CHF",
        "CLP",
        "CNY",
        "COP",
        "CZK",
        "DKK",
        "EGP",
        "EUR",
        "GBP",
        "HKD",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "JPY",
        "KRW",
        "MXN",
        "MYR",
        "NGN",
        "NOK",
        "NZD",
        "PEN",
        "PHP",
        "PKR",
        "PLN",
        "QAR",
        "RON",
        "SAR",
        "SEK",
        "SGD",
        "THB",
        "TRY",
        "TWD",
        "UAH",
        "USD",
        "VND",
        "ZAR",
    }
)


class Transaction(NamedTuple):
    """One card transaction, validated; `epoch` and `local_hour` are derived from `timestamp`.

    A NamedTuple rather than a frozen dataclass: as immutable, and three times cheaper to build on the
    Lambda's hot path.
    """

    transaction_id: str
    user_id: str
    merchant_id: str
    amount: float
    currency: str
    timestamp: str
    category: str
    epoch: float
    local_hour: int


def parse_transaction(data: bytes, *, received_at: float | None = None) -> Transaction:
    """Parse one stream record's bytes; raise InvalidRecordError naming the field and the reason.

    `received_at` (epoch seconds) bounds the timestamp: at most an hour ahead of it and at most
    seven days behind it. Offline files (training, backtests) pass None and skip that check.
    """
    return transaction_from_mapping(decode_payload(data), received_at=received_at)


def decode_payload(data: bytes) -> dict[str, object]:
    """A record's bytes as a JSON object, or InvalidRecordError (on the field `payload`, or on a key
    that appears twice in one object)."""
    plain = _plain_object(data)
    if plain is not None:
        return plain
    if data[:1] != b"{":
        _refuse_foreign_encoding(data)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise InvalidRecordError("payload", f"{len(data)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecordError("payload", f"not valid UTF-8 at byte {exc.start}") from exc
    # Two substring tests for the usual record: one '{' and no '['; any other is measured.
    if ("[" in text or "{" in text[1:]) and _nested_too_deep(text):
        raise InvalidRecordError("payload", f"objects or arrays nested over {MAX_JSON_DEPTH} levels deep")
    try:
        obj = _json_value(text)
    except json.JSONDecodeError as exc:
        raise InvalidRecordError("payload", f"not JSON ({exc.msg} at character {exc.pos})") from exc
    except ValueError as exc:  # an integer literal beyond Python's 4,300-digit conversion limit
        raise InvalidRecordError("payload", f"not readable as JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise InvalidRecordError("payload", f"expected a JSON object, got {type(obj).__name__}")
    return obj


_BEYOND_INT64 = float(2**63)
_BACKSLASH = ord("\\")
"""Looked for as a byte: `92 in data` is a memchr, `b"\\" in data` a substring search (16 against 194 ns)."""


def _plain_object(data: bytes) -> dict[str, object] | None:
    """The usual record, parsed by orjson (half the standard library's cost), or None: then the
    standard library's parse below decides, and names what is wrong.

    orjson and the standard library differ on duplicate keys (orjson keeps the last silently), integers
    beyond 64 bits (orjson makes them floats), `NaN` and lone surrogates (orjson refuses them) and
    nesting (orjson's own limit); on anything else they agree. So only a flat object without a
    backslash is taken from orjson, and only when its result shows no such difference: without a
    backslash every '"' delimits a string, so the text holds exactly two per key and per string value
    when no key appears twice (a repeated key adds its own strings and hides its earlier value); and
    no float of 2**63 or more, which an integer beyond 64 bits would have become.
    """
    if len(data) > MAX_PAYLOAD_BYTES or data[:1] != b"{":
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    strings = 0
    for value in obj.values():
        kind = type(value)
        if kind is str:
            strings += 1
        elif kind is float:
            if not -_BEYOND_INT64 < value < _BEYOND_INT64:
                return None
        elif kind is dict or kind is list:
            return None
    if _BACKSLASH in data or data.count(b'"') != 2 * (len(obj) + strings):
        return None
    return obj  # type: ignore[no-any-return]  # a dict: the text starts with "{" and parsed


_FOREIGN_ENCODINGS = (
    (b"\x1f\x8b", "gzip-compressed bytes (1f 8b): put records as uncompressed UTF-8 JSON"),
    (b"\xef\xbb\xbf", "starts with a UTF-8 byte-order mark, which JSON texts must not carry (RFC 8259)"),
    (b"\x00\x00\xfe\xff", "starts with a UTF-32 byte-order mark: records are UTF-8 JSON"),
    (b"\xff\xfe\x00\x00", "starts with a UTF-32 byte-order mark: records are UTF-8 JSON"),
    (b"\xfe\xff", "starts with a UTF-16 byte-order mark: records are UTF-8 JSON"),
    (b"\xff\xfe", "starts with a UTF-16 byte-order mark: records are UTF-8 JSON"),
)


def _refuse_foreign_encoding(data: bytes) -> None:
    """Name what a record is when its first bytes say it is not UTF-8 JSON at all."""
    for signature, reason in _FOREIGN_ENCODINGS:
        if data.startswith(signature):
            raise InvalidRecordError("payload", reason)


def _nested_too_deep(text: str) -> bool:
    """True when objects and arrays nest more than MAX_JSON_DEPTH levels (each level needs a bracket)."""
    return text.count("[") + text.count("{") > MAX_JSON_DEPTH and _depth(text) > MAX_JSON_DEPTH


_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def _depth(text: str) -> int:
    """How deep objects and arrays nest in a JSON text (brackets inside strings do not count).

    Exact for valid JSON; for invalid JSON at least the depth the parser would reach before failing.
    """
    depth = deepest = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        bracket = match.group()
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in "]}":
            depth -= 1
    return deepest


MAX_FIELD_NAME_CHARS = 64


def _field_name(key: str) -> str:
    """A key of the record as an error's field: itself when printable and short, else escaped ASCII.

    The field goes into logs and SQS message attributes, which refuse control characters and lone
    surrogates; an empty or unbounded name would say nothing.
    """
    if 0 < len(key) <= MAX_FIELD_NAME_CHARS and key.isprintable():
        return key
    escaped = json.dumps(key)
    return escaped if len(escaped) <= MAX_FIELD_NAME_CHARS else escaped[: MAX_FIELD_NAME_CHARS - 3] + "..."


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """An object of the record, refused when a key appears twice (RFC 8259 leaves which one counts open)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidRecordError(_field_name(key), "appears more than once in one JSON object")
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)
_JSON_WHITESPACE = " \t\n\r"


def _json_value(text: str) -> object:
    """`json.loads(text)`, refusing duplicate keys.

    `JSONDecoder.decode` does this with a regular expression before and after the value; stripping
    JSON's four whitespace characters by hand is a fifth of the parse cheaper (docs/reliability.md).
    """
    start = len(text) - len(text.lstrip(_JSON_WHITESPACE))
    value, end = _DECODER.raw_decode(text, start)
    if end != len(text) and text[end:].strip(_JSON_WHITESPACE):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def transaction_from_mapping(obj: dict[str, object], *, received_at: float | None = None) -> Transaction:
    """Validate a decoded record; extra keys are allowed and ignored."""
    missing = [name for name in FIELDS if name not in obj]
    if missing:
        raise InvalidRecordError(missing[0], "missing")
    text, timestamp, epoch = instant(obj, "timestamp", received_at)
    # tuple.__new__, not Transaction(...): a NamedTuple's constructor is a generated Python function, a
    # frame a record even where this module is compiled (layers/fraudwatch/compile.py).
    fields = (
        identifier(obj, "transaction_id"),
        identifier(obj, "user_id"),
        identifier(obj, "merchant_id"),
        _amount(obj["amount"]),
        _currency(obj["currency"]),
        text,
        _category(obj["category"]),
        epoch,
        timestamp.hour,
    )
    return tuple.__new__(Transaction, fields)


def instant(obj: dict[str, object], field: str, received_at: float | None) -> tuple[str, datetime, float]:
    """The timestamp in `obj[field]`: its text, parsed, and as epoch seconds, checked against arrival."""
    text = obj[field]
    if not isinstance(text, str):
        raise InvalidRecordError(field, f"expected an ISO 8601 string, got {type(text).__name__}")
    parsed = parse_timestamp(text, field=field)
    epoch = parsed.timestamp()
    check_recent(epoch, received_at, field=field)
    return text, parsed, epoch


def check_recent(epoch: float, received_at: float | None, *, field: str = "timestamp") -> None:
    """A record's instant must be at most an hour after its arrival and at most 7 days before it."""
    if received_at is None:
        return
    if epoch > received_at + MAX_FUTURE_SKEW_SECONDS:
        raise InvalidRecordError(field, "more than an hour in the future")
    if epoch < received_at - MAX_AGE_SECONDS:
        raise InvalidRecordError(field, "more than 7 days in the past")


def identifier(obj: dict[str, object], field: str) -> str:
    """The id in `obj[field]`, validated by `id_problem`."""
    value = obj[field]
    if not isinstance(value, str):
        raise InvalidRecordError(field, f"expected a string, got {type(value).__name__}")
    problem = id_problem(value)
    if problem is not None:
        raise InvalidRecordError(field, problem)
    return value


def id_problem(value: str) -> str | None:
    """Why `value` is not a valid id, or None when it is one.

    An id is 1 to MAX_ID_CHARS printable characters (str.isprintable: no control or format character,
    no lone surrogate, no separator other than the ASCII space) and no space at all: user and
    merchant profiles keep their sets of merchant and transaction ids space-joined (profile.py), so an
    id with a space would come back from the store as two, and a retried transaction would be counted
    again. Any script is welcome: `café-Zürich-東京` is an id.
    """
    if 0 < len(value) <= MAX_ID_CHARS and value.isprintable() and " " not in value:
        return None
    if not value:
        return f"empty ({ID_RULE})"
    if len(value) > MAX_ID_CHARS:
        return f"{len(value)} characters, over the {MAX_ID_CHARS}-character limit ({ID_RULE})"
    if not value.strip():
        return f"only whitespace ({ID_RULE})"
    if value != value.strip():
        return f"leading or trailing whitespace ({ID_RULE})"
    position, char = next((i, c) for i, c in enumerate(value) if c == " " or not c.isprintable())
    what = "a space" if char == " " else f"U+{ord(char):04X}, not printable,"
    return f"{what} at position {position} ({ID_RULE})"


def _amount(value: object) -> float:
    # A tuple, not `int | float`: that union is built anew at each call.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRecordError("amount", f"expected a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRecordError("amount", "must be a finite number")
    # Compared before float(): an integer of 400 digits compares exactly, but float() overflows on it.
    if value < MIN_AMOUNT:
        raise InvalidRecordError("amount", AMOUNT_RULE)
    if value > MAX_AMOUNT:
        raise InvalidRecordError("amount", f"exceeds the {MAX_AMOUNT:,.0f} limit")
    return storable_number(float(value) + 0.0, "amount")  # + 0.0: -0.0 is stored as 0


def storable_number(value: float, field: str) -> float:
    """`value` when DynamoDB can store it as a number, else InvalidRecordError on `field`.

    The bounds are compared as floats: the repr written (the shortest that reads back as the same
    float) is within them exactly when the float is.
    """
    magnitude = abs(value)
    if magnitude and not DYNAMODB_MIN_MAGNITUDE <= magnitude < DYNAMODB_MAX_MAGNITUDE:
        raise InvalidRecordError(
            field, f"{value!r} is outside the magnitudes DynamoDB stores (1e-130 to below 1e126, or 0)"
        )
    return value


def _currency(value: object) -> str:
    if not isinstance(value, str) or value not in CURRENCIES:
        raise InvalidRecordError("currency", "expected a supported ISO 4217 code such as 'USD'")
    return value


def _category(value: object) -> str:
    if not isinstance(value, str) or not CATEGORY_PATTERN.fullmatch(value):
        raise InvalidRecordError("category", "expected 1-32 lowercase letters, digits or '_'")
    return value


def parse_timestamp(value: object, *, field: str = "timestamp") -> datetime:
    """Parse a contract timestamp: ISO 8601 with a UTC offset, or InvalidRecordError on `field`.

    Any aware datetime's epoch is computable (`timestamp()` subtracts, it never overflows), years 1
    and 9999 with ±23:59 offsets included; those are refused later, by their distance to arrival.
    """
    if not isinstance(value, str):
        raise InvalidRecordError(field, f"expected an ISO 8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:  # UnicodeEncodeError (a lone surrogate) is a ValueError too
        raise InvalidRecordError(field, "not an ISO 8601 date-time") from exc
    if parsed.tzinfo is None:
        raise InvalidRecordError(field, "needs a UTC offset such as '+00:00' or 'Z'")
    return parsed
