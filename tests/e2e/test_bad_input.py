"""Bad input through the whole path: PutRecords on the embedded stack, the runner, the real handler.

A catalogue of malformed records is mixed at random into batches of valid ones. Each malformed record
must land in the quarantine queue with the field at fault; every valid record of the same batches must
be decided; no batch may be retried or given up because of them (no shard waits).
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fraudwatch.domain.transaction import FIELDS, MAX_PAYLOAD_BYTES
from infra.producer import live_transactions, stream_entry
from infra.runner import EventSourceRunner, MappingSettings
from tests.e2e.conftest import Embedded, drain_bodies, scan

pytestmark = pytest.mark.e2e

VALID_COUNT = 240
SEED = 5

Build = Callable[[dict[str, Any]], bytes]


def _changed(**changes: Any) -> Build:
    return lambda base: json.dumps({**base, **changes}).encode()


def _without(name: str) -> Build:
    return lambda base: json.dumps({k: v for k, v in base.items() if k != name}).encode()


def _raw_amount(literal: str) -> Build:
    """A record whose amount is a JSON literal json.dumps would never write (NaN, 1e400, ...)."""
    return lambda base: _without("amount")(base)[:-1] + f', "amount": {literal}}}'.encode()


def _now_plus(delta: timedelta) -> Build:
    return _changed(timestamp=(datetime.now(UTC) + delta).isoformat())


# kind -> (how to build it from a valid record, the field the quarantine must name)
CATALOGUE: dict[str, tuple[Build, str]] = {
    "not json": (lambda base: b"{not json", "payload"),
    "truncated json": (lambda base: json.dumps(base).encode()[:40], "payload"),
    "json array": (lambda base: json.dumps(list(base.values())).encode(), "payload"),
    "json string": (lambda base: b'"a transaction"', "payload"),
    "json number": (lambda base: b"42", "payload"),
    "json null": (lambda base: b"null", "payload"),
    "invalid utf-8": (lambda base: b'{"user_id": "\xff\xfe"}', "payload"),
    "utf-8 byte order mark": (lambda base: b"\xef\xbb\xbf" + json.dumps(base).encode(), "payload"),
    "empty payload": (lambda base: b"", "payload"),
    "oversized payload": (_changed(note="x" * MAX_PAYLOAD_BYTES), "payload"),
    **{f"missing {name}": (_without(name), name) for name in FIELDS},
    "amount zero": (_changed(amount=0), "amount"),
    "amount negative": (_changed(amount=-12.5), "amount"),
    "amount NaN": (_raw_amount("NaN"), "amount"),
    "amount Infinity": (_raw_amount("Infinity"), "amount"),
    "amount overflowing a double": (_raw_amount("1e400"), "amount"),
    "amount huge": (_changed(amount=1e12), "amount"),
    "amount a string": (_changed(amount="42.50"), "amount"),
    "amount a boolean": (_changed(amount=True), "amount"),
    "amount null": (_changed(amount=None), "amount"),
    "currency unknown": (_changed(currency="XYZ"), "currency"),
    "currency lowercase": (_changed(currency="usd"), "currency"),
    "currency a number": (_changed(currency=840), "currency"),
    "timestamp not a date": (_changed(timestamp="yesterday"), "timestamp"),
    "timestamp empty": (_changed(timestamp=""), "timestamp"),
    "timestamp a number": (_changed(timestamp=1796083200), "timestamp"),
    "timestamp without offset": (_changed(timestamp="2026-11-30T10:00:00"), "timestamp"),
    "timestamp far in the future": (_now_plus(timedelta(days=2)), "timestamp"),
    "timestamp far in the past": (_now_plus(timedelta(days=-30)), "timestamp"),
    "transaction_id empty": (_changed(transaction_id=""), "transaction_id"),
    "transaction_id with spaces": (_changed(transaction_id="tx 1"), "transaction_id"),
    "transaction_id null": (_changed(transaction_id=None), "transaction_id"),
    "user_id too long": (_changed(user_id="u" * 65), "user_id"),
    "user_id with a control character": (_changed(user_id="user\n01"), "user_id"),
    "user_id not ascii": (_changed(user_id="usér-1"), "user_id"),
    "merchant_id a number": (_changed(merchant_id=17), "merchant_id"),
    "merchant_id an object": (_changed(merchant_id={"id": "m-1"}), "merchant_id"),
    "category uppercase": (_changed(category="Grocery"), "category"),
    "category null": (_changed(category=None), "category"),
    "category empty": (_changed(category=""), "category"),
}


def _mixed_entries() -> tuple[list[dict[str, Any]], dict[int, str], set[str]]:
    """PutRecords entries: valid transactions with the catalogue spread among them at random.

    Returns the entries, the position of each malformed kind, and the valid transaction ids.
    """
    valid = list(live_transactions(VALID_COUNT, seed=SEED))
    valid[7] = {**valid[7], "device": "ios-17", "channel": "app"}  # extra fields are allowed and ignored
    entries = [stream_entry(tx, i).request for i, tx in enumerate(valid)]
    base = {name: valid[0][name] for name in FIELDS}
    rng = random.Random(SEED)
    kinds: dict[int, str] = {}
    for n, (kind, (build, _)) in enumerate(CATALOGUE.items()):
        position = rng.randrange(len(entries) + 1)
        entries.insert(position, {"Data": build(base), "PartitionKey": f"bad-{n}"})
        kinds = {p + (p >= position): k for p, k in kinds.items()}
        kinds[position] = kind
    return entries, kinds, {str(tx["transaction_id"]) for tx in valid}


def test_every_malformed_record_is_quarantined_naming_its_field_and_no_shard_waits(embedded: Embedded):
    assert len(CATALOGUE) >= 25
    kinesis, sqs = embedded.client("kinesis"), embedded.client("sqs")
    stream = embedded.outputs["StreamName"]
    entries, kinds, valid_ids = _mixed_entries()
    response = kinesis.put_records(StreamName=stream, Records=entries)
    assert response.get("FailedRecordCount", 0) == 0
    # Sequence numbers are per shard (moto's are small integers on every shard): key by both.
    where = [(r["ShardId"], r["SequenceNumber"]) for r in response["Records"]]
    position_of = {kind: p for p, kind in kinds.items()}
    settings = MappingSettings.from_template()
    runner = EventSourceRunner(
        stream_name=stream,
        handler=embedded.handler,
        settings=settings,
        kinesis=kinesis,
        sqs=sqs,
        on_failure_queue_url=embedded.outputs["OnFailureQueueUrl"],
        poll_interval_s=0.05,
        retry_backoff_s=0,
    )

    stats = runner.run_until_idle(idle_s=0.5, timeout_s=120)

    messages = drain_bodies(sqs, embedded.outputs["QuarantineQueueUrl"])
    quarantined = {(body["shard_id"], body["sequence_number"]): (body, attrs) for body, attrs in messages}
    wrong = {}
    for kind, position in position_of.items():
        expected = CATALOGUE[kind][1]
        body, attributes = quarantined.get(where[position], ({}, {}))
        if body.get("field") != expected or not body.get("reason"):
            wrong[kind] = (expected, body.get("field"), body.get("reason"))
        elif attributes["field"]["StringValue"] != expected:
            wrong[kind] = (expected, "message attribute", attributes["field"]["StringValue"])
    assert wrong == {}, "kind: (expected field, quarantined field, reason)"
    assert len(messages) == len(quarantined) == len(CATALOGUE)  # each once, and nothing valid
    original = {where[p]: entries[p]["Data"] for p in kinds}
    for key, (body, _) in quarantined.items():
        kept = base64.b64decode(body["payload_base64"])
        assert kept == original[key]  # the payload is kept as it came, for inspection and replay
        assert body["payload_bytes"] == len(original[key])

    decided = scan(embedded.client("dynamodb"), embedded.outputs["DecisionsTableName"], "transaction_id")
    assert valid_ids <= set(decided)
    assert len(decided.keys() & valid_ids) == VALID_COUNT
    assert (stats.retries, stats.errors, stats.bisections, stats.records_sent_to_on_failure) == (0, 0, 0, 0)
    assert stats.batches >= 3  # the catalogue really was spread over several batches, on both shards
    assert drain_bodies(sqs, embedded.outputs["OnFailureQueueUrl"]) == []
