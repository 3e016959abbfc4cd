"""Bad input through the whole path: PutRecords on the embedded stack, the runner, the real handler.

A catalogue of malformed records, transactions and labels, goes on the stream twice: each kind alone
(its own PutRecords, nothing else on the stream), then all of them mixed at random into batches of
valid records and valid edge cases. Each malformed record must land in the quarantine queue once with
the field at fault and a reason, and change nothing else; every valid record of the same batches must
be decided (or, for a label, counted) exactly once; no batch may be retried, bisected or given up
because of them (no shard waits).

Both tests read the stream from their own start (AT_TIMESTAMP), so neither meets records another test
put on the session's stack, and they find every resource through the stack's outputs.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fraudwatch.adapters.dynamodb import stored_state
from fraudwatch.domain.events import parse_event
from fraudwatch.domain.label import LABEL_FIELDS, Label
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.transaction import (
    DYNAMODB_MIN_MAGNITUDE,
    FIELDS,
    MAX_ID_CHARS,
    MAX_JSON_DEPTH,
    MAX_PAYLOAD_BYTES,
)
from infra.events import label_body
from infra.producer import live_transactions, stream_entry
from infra.runner import EventSourceRunner, MappingSettings, RunnerStats
from tests.e2e.conftest import Embedded, drain_bodies, scan

pytestmark = pytest.mark.e2e

VALID_COUNT = 240
SEED = 5
KINESIS_MAX_RECORD = 1024 * 1024  # data and partition key together
ALONE_TIMEOUT_S = 20.0

Build = Callable[[dict[str, Any]], bytes]
"""A payload built from a valid transaction (its id unique to the kind)."""


def _now_iso(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def _dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


def _changed(**changes: Any) -> Build:
    return lambda base: _dumps({**base, **changes})


def _without(name: str) -> Build:
    return lambda base: _dumps({k: v for k, v in base.items() if k != name})


def _raw(name: str, literal: str) -> Build:
    """`name` set to a JSON literal json.dumps would never write (NaN, 400 digits, a key twice, ...)."""
    return lambda base: _without(name)(base)[:-1] + f', "{name}": {literal}}}'.encode()


def _ahead(delta: timedelta) -> Build:
    return lambda base: _dumps({**base, "timestamp": _now_iso(delta)})


def _label(base: dict[str, Any]) -> dict[str, Any]:
    """The valid label of a valid transaction, known now."""
    return label_body(base["transaction_id"], base["merchant_id"], True, _now_iso())


def _label_changed(**changes: Any) -> Build:
    return lambda base: _dumps({**_label(base), **changes})


def _label_without(name: str) -> Build:
    return lambda base: _dumps({k: v for k, v in _label(base).items() if k != name})


def _label_raw(name: str, literal: str) -> Build:
    def build(base: dict[str, Any]) -> bytes:
        label = {k: v for k, v in _label(base).items() if k != name}
        return _dumps(label)[:-1] + f', "{name}": {literal}}}'.encode()

    return build


def _twice(name: str, value: Any) -> str:
    """A value, then the same key and value again: the literal for `_raw(name, ...)`."""
    return f"{json.dumps(value)}, {json.dumps(name)}: {json.dumps(value)}"


def _label_at(delta: timedelta) -> Build:
    return lambda base: _dumps({**_label(base), "labelled_at": _now_iso(delta)})


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def _largest_record(base: dict[str, Any]) -> bytes:
    """A valid-looking record as large as Kinesis takes one (1 MiB with its partition key)."""
    data = _dumps({**base, "note": ""})
    return data[:-2] + b"x" * (KINESIS_MAX_RECORD - len(data) - 16) + data[-2:]


TIMES = {
    "not a date": "yesterday",
    "empty": "",
    "without offset": "2026-11-30T10:00:00",
    "a date only": "2026-11-30",
    "with an offset over 24 h": "2026-11-30T10:00:00+25:00",
    "at hour 24": "2026-11-30T24:00:00Z",
    "with a lone surrogate": "2026-11-30T10:00:00\ud800Z",
    "year 9999, 23:59 behind UTC": "9999-12-31T23:59:59.999999-23:59",
    "year 1, 23:59 ahead of UTC": "0001-01-01T00:00:00+23:59",
}
BAD_IDS = {
    "empty": "",
    "null": None,
    "a number": 17,
    "an object": {"id": "m-1"},
    "a list": ["m-1"],
    "with a space": "tx 1",
    "with a leading space": " tx-1",
    "with a trailing space": "tx-1 ",
    "only spaces": "   ",
    "an ideographic space only": "\u3000",
    f"{MAX_ID_CHARS + 1} characters": "u" * (MAX_ID_CHARS + 1),
    f"{MAX_ID_CHARS + 1} astral characters": "\U0001f600" * (MAX_ID_CHARS + 1),
    "with a newline": "user\n01",
    "with a tab": "user\t01",
    "with a zero-width space": "user\u200b01",
    "with a right-to-left override": "user\u202e10",
    "with a no-break space": "user\u00a001",
    "with a lone surrogate": "user-\udc00",
}
ID_KINDS = {  # which field carries which bad id: every id field gets a few, every bad id one field
    "transaction_id": ["empty", "null", "with a space", "with a leading space", "only spaces", "a list"],
    "user_id": [
        f"{MAX_ID_CHARS + 1} characters",
        f"{MAX_ID_CHARS + 1} astral characters",
        "with a newline",
        "with a tab",
        "with a zero-width space",
        "with a lone surrogate",
    ],
    "merchant_id": [
        "a number",
        "an object",
        "with a trailing space",
        "an ideographic space only",
        "with a right-to-left override",
        "with a no-break space",
    ],
}

# kind -> (how to build it from a valid transaction, the field the quarantine must name)
CATALOGUE: dict[str, tuple[Build, str]] = {
    # the payload as a whole
    "not json": (lambda base: b"{not json", "payload"),
    "truncated json": (lambda base: _dumps(base)[:40], "payload"),
    "json array": (lambda base: json.dumps(list(base.values())).encode(), "payload"),
    "json string": (lambda base: b'"a transaction"', "payload"),
    "json number": (lambda base: b"42", "payload"),
    "json null": (lambda base: b"null", "payload"),
    "json true": (lambda base: b"true", "payload"),
    "only whitespace": (lambda base: b" \r\n\t ", "payload"),
    "empty payload": (lambda base: b"", "payload"),
    "invalid utf-8": (lambda base: b'{"user_id": "\xff\xfe"}', "payload"),
    "an encoded surrogate (CESU-8)": (
        lambda base: _dumps({**base, "note": "x"})[:-3] + b'\xed\xa0\x80"}',
        "payload",
    ),
    "utf-8 byte-order mark": (lambda base: b"\xef\xbb\xbf" + _dumps(base), "payload"),
    "utf-16 with a byte-order mark": (
        lambda base: b"\xff\xfe" + json.dumps(base).encode("utf-16-le"),
        "payload",
    ),
    "utf-16 big-endian with a byte-order mark": (
        lambda base: b"\xfe\xff" + json.dumps(base).encode("utf-16-be"),
        "payload",
    ),
    "utf-32 with a byte-order mark": (
        lambda base: b"\xff\xfe\x00\x00" + json.dumps(base).encode("utf-32-le"),
        "payload",
    ),
    "gzip-compressed": (lambda base: gzip.compress(_dumps(base)), "payload"),
    "oversized payload": (_changed(note="x" * MAX_PAYLOAD_BYTES), "payload"),
    "1 MiB payload, Kinesis's largest": (_largest_record, "payload"),
    "2,000 levels deep": (lambda base: _nested(2000).encode(), "payload"),
    "1,900 levels deep in an extra field": (_raw("extra", _nested(1900)), "payload"),
    "one level over the depth limit": (_raw("extra", _nested(MAX_JSON_DEPTH)), "payload"),
    "data after the object": (lambda base: _dumps(base) + b" trailing", "payload"),
    "two objects": (lambda base: _dumps(base) + _dumps(base), "payload"),
    # a key twice: which value counts would be a guess
    "amount twice": (_raw("amount", '12.5, "amount": 1250.0'), "amount"),
    "user_id twice, the same": (
        lambda base: _raw("user_id", _twice("user_id", base["user_id"]))(base),
        "user_id",
    ),
    "an extra field twice": (_raw("note", '"a", "note": "b"'), "note"),
    "a key twice in a nested object": (_raw("device", '{"os": "ios", "os": "android"}'), "os"),
    "an unprintable key twice": (_raw("\\u0000", '1, "\\u0000": 2'), '"\\u0000"'),
    **{f"missing {name}": (_without(name), name) for name in FIELDS},
    # event
    "event unknown": (_changed(event="refund"), "event"),
    "event capitalised": (_changed(event="Label"), "event"),
    "event a number": (_changed(event=1), "event"),
    "event null": (_changed(event=None), "event"),
    # amount
    "amount negative": (_changed(amount=-12.5), "amount"),
    "amount NaN": (_raw("amount", "NaN"), "amount"),
    "amount Infinity": (_raw("amount", "Infinity"), "amount"),
    "amount -Infinity": (_raw("amount", "-Infinity"), "amount"),
    "amount overflowing a double": (_raw("amount", "1e400"), "amount"),
    "amount huge": (_changed(amount=1e12), "amount"),
    "amount an integer of 400 digits": (_raw("amount", "9" * 400), "amount"),
    "amount an integer of minus 400 digits": (_raw("amount", "-" + "9" * 400), "amount"),
    "amount below DynamoDB's range": (_changed(amount=1e-300), "amount"),
    "amount subnormal": (_changed(amount=5e-324), "amount"),
    "amount a string": (_changed(amount="42.50"), "amount"),
    "amount true": (_changed(amount=True), "amount"),
    "amount false": (_changed(amount=False), "amount"),
    "amount null": (_changed(amount=None), "amount"),
    "amount a list": (_changed(amount=[42.5]), "amount"),
    # currency
    "currency unknown": (_changed(currency="XYZ"), "currency"),
    "currency lowercase": (_changed(currency="usd"), "currency"),
    "currency a number": (_changed(currency=840), "currency"),
    "currency with a trailing space": (_changed(currency="USD "), "currency"),
    # timestamp
    **{f"timestamp {what}": (_changed(timestamp=stamp), "timestamp") for what, stamp in TIMES.items()},
    "timestamp a number": (_changed(timestamp=1796083200), "timestamp"),
    "timestamp null": (_changed(timestamp=None), "timestamp"),
    "timestamp two days ahead": (_ahead(timedelta(days=2)), "timestamp"),
    "timestamp thirty days back": (_ahead(timedelta(days=-30)), "timestamp"),
    # ids
    **{
        f"{field} {what}": (_changed(**{field: BAD_IDS[what]}), field)
        for field, kinds in ID_KINDS.items()
        for what in kinds
    },
    # category
    "category uppercase": (_changed(category="Grocery"), "category"),
    "category null": (_changed(category=None), "category"),
    "category empty": (_changed(category=""), "category"),
    # labels: every field of the label contract
    **{f"label missing {name}": (_label_without(name), name) for name in LABEL_FIELDS},
    "label is_fraud a string": (_label_changed(is_fraud="yes"), "is_fraud"),
    "label is_fraud a number": (_label_changed(is_fraud=1), "is_fraud"),
    "label is_fraud null": (_label_changed(is_fraud=None), "is_fraud"),
    "label is_fraud a list": (_label_changed(is_fraud=[True]), "is_fraud"),
    "label is_fraud twice": (_label_raw("is_fraud", 'true, "is_fraud": false'), "is_fraud"),
    "label transaction_id empty": (_label_changed(transaction_id=""), "transaction_id"),
    "label transaction_id with a space": (_label_changed(transaction_id="tx 1"), "transaction_id"),
    "label transaction_id a number": (_label_changed(transaction_id=17), "transaction_id"),
    "label merchant_id too long": (_label_changed(merchant_id="m" * (MAX_ID_CHARS + 1)), "merchant_id"),
    "label merchant_id with a control character": (_label_changed(merchant_id="m\x07bell"), "merchant_id"),
    "label merchant_id null": (_label_changed(merchant_id=None), "merchant_id"),
    "label labelled_at without offset": (_label_changed(labelled_at="2026-11-30T10:00:00"), "labelled_at"),
    "label labelled_at not a date": (_label_changed(labelled_at="last week"), "labelled_at"),
    "label labelled_at a number": (_label_changed(labelled_at=1796083200), "labelled_at"),
    "label labelled_at two days ahead": (_label_at(timedelta(days=2)), "labelled_at"),
    "label labelled_at thirty days back": (_label_at(timedelta(days=-30)), "labelled_at"),
    "label labelled_at year 9999": (
        _label_changed(labelled_at="9999-12-31T23:59:59-23:59"),
        "labelled_at",
    ),
    "label event uppercase": (_label_changed(event="LABEL"), "event"),
}


def _base(n: int) -> dict[str, Any]:
    """A valid transaction of the catalogue's own user and merchant, with an id of its own.

    None of the valid records uses this user or merchant, so a malformed record wrongly accepted
    shows as a decision, a profile or a merchant profile that should not exist.
    """
    return {
        "transaction_id": f"bad-{n:03d}",
        "user_id": "bad-input-user",
        "merchant_id": "bad-input-merchant",
        "amount": 42.5,
        "currency": "EUR",
        "timestamp": _now_iso(timedelta(seconds=-30)),
        "category": "grocery",
    }


def _malformed() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Each kind, its expected field, and its PutRecords entry (partition key `bad-<n>`)."""
    for n, (kind, (build, field)) in enumerate(CATALOGUE.items()):
        key = f"bad-{n}"
        data = build(_base(n))
        assert len(data) + len(key) <= KINESIS_MAX_RECORD, kind
        yield kind, field, {"Data": data, "PartitionKey": key}


# ------------------------------------------------------------------ valid edge cases, decided


@dataclass(frozen=True)
class Edge:
    """A valid record the contract must accept: its payload, and what it is."""

    record: dict[str, Any]
    data: bytes

    @property
    def is_label(self) -> bool:
        return self.record.get("event") == "label"

    @property
    def entry(self) -> dict[str, Any]:
        key = self.record["merchant_id"] if self.is_label else self.record["user_id"]
        return {"Data": self.data, "PartitionKey": key}


def _utf8(record: dict[str, Any], **literals: str) -> bytes:
    """The record as UTF-8 JSON (ids unescaped), with `literals` written as given after it."""
    data = json.dumps(record, ensure_ascii=False).encode()
    extra = "".join(f', "{name}": {literal}' for name, literal in literals.items())
    return data[:-1] + extra.encode() + b"}"


def _edges() -> list[Edge]:
    """Unicode ids, ids at their longest, extra and nested fields, odd but valid JSON and numbers."""
    now = _now_iso(timedelta(seconds=-20))

    def tx(n: int, **changes: Any) -> dict[str, Any]:
        base = {
            "transaction_id": f"edge-{n}",
            "user_id": f"edge-user-{n}",
            "merchant_id": "edge-merchant",
            "amount": 17.25,
            "currency": "CHF",
            "timestamp": now,
            "category": "travel",
        }
        return {**base, **changes}

    longest = "\U0001f600" * MAX_ID_CHARS
    label = label_body("edge-label-tx-1", "edge-label-merchant", True, now)
    unicode_label = {**label, "transaction_id": "étiquette-1", "merchant_id": "Zürich-東京-label"}
    return [
        Edge(r := tx(0, user_id="café-Zürich-東京", merchant_id="مقهى-٤٢"), _utf8(r)),
        Edge(r := tx(1, transaction_id="τ-ταυτότητα-1"), _utf8(r)),
        Edge(r := tx(2, user_id=longest), _utf8(r)),
        Edge(r := tx(3, merchant_id='m{"[1]"}'), _utf8(r)),
        Edge(r := tx(4), _utf8({**r, "device": "ios-17", "channel": "app"})),
        Edge(r := tx(5), _utf8(r, extra=_nested(MAX_JSON_DEPTH - 1))),
        Edge(r := tx(6), b" \n\t" + _utf8(r) + b"\r\n"),
        Edge(r := tx(7, amount=DYNAMODB_MIN_MAGNITUDE), _utf8(r)),
        Edge(r := tx(8), _utf8({k: v for k, v in r.items() if k != "amount"}, amount="12.3" + "4" * 50)),
        Edge(r := tx(9, timestamp=now.replace("+00:00", "Z")), _utf8(r)),
        Edge(r := tx(10, amount=0), _utf8(r)),
        Edge(label, _utf8(label)),
        Edge(unicode_label, _utf8(unicode_label)),
    ]


# ------------------------------------------------------------------ the stack and its runner


def _runner(stack: Embedded, since: float, **changes: Any) -> EventSourceRunner:
    """The template's mapping reading from `since` (and `changes` to its settings)."""
    settings = replace(
        MappingSettings.from_template(),
        starting_position="AT_TIMESTAMP",
        starting_position_timestamp=since,
        **changes,
    )
    return EventSourceRunner(
        stream_name=stack.outputs["StreamName"],
        handler=stack.handler,
        settings=settings,
        kinesis=stack.client("kinesis"),
        sqs=stack.client("sqs"),
        on_failure_queue_url=stack.outputs["OnFailureQueueUrl"],
        poll_interval_s=0.02,
        retry_backoff_s=0,
    )


@dataclass
class State:
    """What the stack holds that a record can change: decisions, user and merchant profiles."""

    decisions: dict[str, dict[str, Any]]
    profiles: dict[str, dict[str, Any]]
    merchants: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, stack: Embedded) -> State:
        dynamodb, outputs = stack.client("dynamodb"), stack.outputs
        return cls(
            decisions=scan(dynamodb, outputs["DecisionsTableName"], "transaction_id"),
            profiles=scan(dynamodb, outputs["ProfilesTableName"], "user_id"),
            merchants=scan(dynamodb, outputs["MerchantProfilesTableName"], "merchant_id"),
        )

    def count(self, user_id: str) -> int:
        item = self.profiles.get(user_id)
        return 0 if item is None else UserProfile.from_json(user_id, stored_state(item)).count


def _put(stack: Embedded, entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """PutRecords; where each entry landed: (shard, sequence number), sequence numbers being per shard."""
    response = stack.client("kinesis").put_records(StreamName=stack.outputs["StreamName"], Records=entries)
    assert response.get("FailedRecordCount", 0) == 0
    return [(r["ShardId"], r["SequenceNumber"]) for r in response["Records"]]


def _quarantine_problem(
    body: dict[str, Any], attributes: dict[str, Any], field: str, data: bytes
) -> str | None:
    """What is wrong with one quarantine message for a record of `data` expected on `field`, if anything."""
    if body.get("field") != field:
        return f"field {body.get('field')!r}, expected {field!r} (reason {body.get('reason')!r})"
    if not body.get("reason"):
        return "no reason"
    if attributes.get("field", {}).get("StringValue") != field:
        return f"message attribute field {attributes.get('field')!r}"
    kept = base64.b64decode(body["payload_base64"])
    if body.get("payload_bytes") != len(data):
        return f"payload_bytes {body.get('payload_bytes')}, sent {len(data)}"
    if kept != data and not (body.get("payload_truncated") and data.startswith(kept)):
        return "payload not kept as it came"
    return None


class LiveRunner:
    """One runner polling the stack's stream in a thread, from its start, with no batching window.

    The window only makes a lone record wait a second for company; every other setting is the
    template's. A record that holds its shard (the failure this suite looks for) is retried without
    end; `restart` then begins a fresh runner after it, so the kinds that follow are still tried.
    """

    def __init__(self, stack: Embedded) -> None:
        self.stack = stack
        self.totals = RunnerStats()
        self._start()

    def _start(self) -> None:
        self.runner = _runner(self.stack, time.time() - 0.001, batching_window_s=0.0)
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bad-input-runner", daemon=True)
        self._thread.start()
        assert self.runner.ready.wait(30), "the runner did not open its shards"

    def _run(self) -> None:
        try:
            self.runner.run(self._stop)
        except Exception as exc:  # reported by the test
            self.error = exc

    def stop(self) -> RunnerStats:
        """Stop the runner (once) and return the counts of every runner so far."""
        if self._stop.is_set():
            return self.totals
        self._stop.set()
        self._thread.join(30)
        stats = self.runner.stats
        for name in vars(stats):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(stats, name))
        return self.totals

    def restart(self) -> None:
        self.stop()
        self._start()

    def delivered(self, count: int, timeout_s: float) -> bool:
        """Wait until `count` records were processed successfully by this runner; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.runner.stats.records_delivered < count:
            if time.monotonic() > deadline or self.error is not None:
                return False
            time.sleep(0.01)
        return True


@pytest.fixture
def live(embedded: Embedded) -> Iterator[LiveRunner]:
    runner = LiveRunner(embedded)
    try:
        yield runner
    finally:
        runner.stop()


def test_the_catalogue_covers_every_field_of_both_contracts():
    named = Counter(field for _, field in CATALOGUE.values())
    assert len(CATALOGUE) >= 60
    assert set(FIELDS) | set(LABEL_FIELDS) | {"payload", "event"} <= set(named)
    assert all(named[field] >= 4 for field in FIELDS if field != "category")


def test_each_malformed_kind_alone_is_quarantined_once_and_changes_nothing(
    embedded: Embedded, live: LiveRunner
):
    sqs, quarantine = embedded.client("sqs"), embedded.outputs["QuarantineQueueUrl"]
    drain_bodies(sqs, quarantine)  # what earlier tests left there is theirs
    before = State.of(embedded)
    wrong: dict[str, str] = {}
    for kind, field, entry in _malformed():
        delivered = live.runner.stats.records_delivered
        ((shard, sequence),) = _put(embedded, [entry])
        if not live.delivered(delivered + 1, ALONE_TIMEOUT_S):
            wrong[kind] = f"not processed in {ALONE_TIMEOUT_S:g} s: {live.runner.stats}, {live.error!r}"
            live.restart()
            drain_bodies(sqs, quarantine)
            continue
        messages = drain_bodies(sqs, quarantine)
        mine = [
            (b, a) for b, a in messages if (b.get("shard_id"), b.get("sequence_number")) == (shard, sequence)
        ]
        if len(mine) != 1 or len(messages) != 1:
            wrong[kind] = f"{len(mine)} quarantine messages for it, {len(messages)} in all"
        elif problem := _quarantine_problem(*mine[0], field, entry["Data"]):
            wrong[kind] = problem
    totals = live.stop()
    after = State.of(embedded)

    assert wrong == {}, "kind: what went wrong"
    assert (totals.retries, totals.errors, totals.bisections, totals.records_sent_to_on_failure) == (0,) * 4
    assert totals.records_delivered == totals.invocations == totals.batches == len(CATALOGUE)  # one call each
    assert after == before  # no decision, no profile, no merchant profile written or changed
    assert drain_bodies(sqs, quarantine) == []  # nothing quarantined late or twice
    assert drain_bodies(sqs, embedded.outputs["OnFailureQueueUrl"]) == []


def _mixed_entries() -> tuple[list[dict[str, Any]], dict[int, str], list[dict[str, Any]], list[Edge]]:
    """PutRecords entries: valid transactions and edge cases with the catalogue spread among them at random.

    Returns the entries, the position of each malformed kind, the valid transactions and the edges.
    """
    valid = list(live_transactions(VALID_COUNT, seed=SEED))
    edges = _edges()
    entries = [stream_entry(tx, i).request for i, tx in enumerate(valid)]
    rng = random.Random(SEED)
    for edge in edges:
        entries.insert(rng.randrange(len(entries) + 1), edge.entry)
    kinds: dict[int, str] = {}
    for kind, _, entry in _malformed():
        position = rng.randrange(len(entries) + 1)
        entries.insert(position, entry)
        kinds = {p + (p >= position): k for p, k in kinds.items()}
        kinds[position] = kind
    return entries, kinds, valid, edges


def test_every_malformed_record_is_quarantined_naming_its_field_and_no_shard_waits(embedded: Embedded):
    sqs, quarantine = embedded.client("sqs"), embedded.outputs["QuarantineQueueUrl"]
    drain_bodies(sqs, quarantine)
    entries, kinds, valid, edges = _mixed_entries()
    before = State.of(embedded)
    since = time.time() - 0.001
    where = _put(embedded, entries)

    stats = _runner(embedded, since).run_until_idle(idle_s=0.5, timeout_s=120)

    messages = drain_bodies(sqs, quarantine)
    quarantined = {(b["shard_id"], b["sequence_number"]): (b, a) for b, a in messages}
    wrong = {}
    for position, kind in kinds.items():
        field = CATALOGUE[kind][1]
        if where[position] not in quarantined:
            wrong[kind] = "not quarantined"
        elif problem := _quarantine_problem(*quarantined[where[position]], field, entries[position]["Data"]):
            wrong[kind] = problem
    assert wrong == {}, "kind: what went wrong"
    assert len(messages) == len(quarantined) == len(CATALOGUE)  # each once, and nothing valid

    after = State.of(embedded)
    edge_transactions = [e.record for e in edges if not e.is_label]
    expected = {str(tx["transaction_id"]) for tx in [*valid, *edge_transactions]}
    assert set(after.decisions) - set(before.decisions) == expected  # each decided, nothing else
    per_user = Counter(str(tx["user_id"]) for tx in [*valid, *edge_transactions])
    applied = {user: after.count(user) - before.count(user) for user in per_user}
    assert applied == per_user  # every valid transaction counted exactly once in its user's profile
    for edge in edges:
        if edge.is_label:  # counted in its merchant's profile
            label = parse_event(edge.data)
            assert isinstance(label, Label)
            state = stored_state(after.merchants[label.merchant_id])
            assert label.applied_id in MerchantProfile.from_json(label.merchant_id, state).applied_ids
    smallest = next(tx for tx in edge_transactions if tx["amount"] == DYNAMODB_MIN_MAGNITUDE)
    assert float(after.decisions[smallest["transaction_id"]]["amount"]["N"]) == DYNAMODB_MIN_MAGNITUDE
    assert stats.records_delivered == len(entries)
    assert (stats.retries, stats.errors, stats.bisections, stats.records_sent_to_on_failure) == (0, 0, 0, 0)
    assert stats.batches >= 3  # the catalogue really was spread over several batches, on both shards
    assert drain_bodies(sqs, embedded.outputs["OnFailureQueueUrl"]) == []
