"""Labels through the whole path: the producer (or PutRecords), the stream, the runner, the real handler.

Labels are put with the merchant id as partition key and change only merchants' profiles: they are
validated and quarantined like transactions, counted once however often Lambda redelivers them, and
read by the merchant features of later days' transactions.

The module deploys a stack of its own on the embedded emulator, and each test's runner starts at the
test's own records (AT_TIMESTAMP): the runner of another test, reading its stream from the start,
never meets these records, nor these runners another test's.
"""

from __future__ import annotations

import inspect
import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraudwatch.adapters.dynamodb import stored_state
from fraudwatch.domain.events import parse_event
from fraudwatch.domain.features import DAY, FEATURE_NAMES, features
from fraudwatch.domain.lineup import FixedLineup
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.transaction import Transaction
from infra.cli import main
from infra.events import label_of, label_payload, lambda_record
from infra.producer import produce
from infra.runner import EventSourceRunner, MappingSettings, RunnerStats
from tests.e2e.conftest import Embedded, deployed, drain_bodies, scan
from tests.e2e.test_delivery import ModelSpy, invoke, noisy_deliveries

pytestmark = pytest.mark.e2e

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def labels_stack(embedded: Embedded, tiny_bundle: Path) -> Embedded:
    """The template deployed again, under a name of its own, on the embedded emulator, with its handler."""
    return deployed(embedded.endpoint_url, "labels", tiny_bundle)


@pytest.fixture
def since() -> float:
    """The test's start: its runner reads the records put from here on."""
    return time.time() - 0.001


def run(stack: Embedded, since: float) -> RunnerStats:
    """The template's mapping (from `since`) over the stream until every shard is idle."""
    settings = replace(
        MappingSettings.from_template(), starting_position="AT_TIMESTAMP", starting_position_timestamp=since
    )
    runner = EventSourceRunner(
        stream_name=stack.outputs["StreamName"],
        handler=stack.handler,
        settings=settings,
        kinesis=stack.client("kinesis"),
        sqs=stack.client("sqs"),
        on_failure_queue_url=stack.outputs["OnFailureQueueUrl"],
        poll_interval_s=0.05,
        retry_backoff_s=0,
    )
    return runner.run_until_idle(idle_s=0.5, timeout_s=120)


def merchant_profiles(stack: Embedded) -> dict[str, MerchantProfile]:
    items = scan(stack.client("dynamodb"), stack.outputs["MerchantProfilesTableName"], "merchant_id")
    return {m: MerchantProfile.from_json(m, stored_state(item)) for m, item in items.items()}


def expected_days(labels: Sequence[dict[str, Any]], merchant: str) -> list[list[int]]:
    """The merchant's label counts by the UTC day each label became known, in the order the days came:
    [day, labels, of which fraud] (`MerchantProfile.days`)."""
    days: dict[int, list[int]] = {}
    for label in labels:
        if label["merchant_id"] == merchant:
            day = int(datetime.fromisoformat(label["labelled_at"]).timestamp() // DAY)
            counts = days.setdefault(day, [0, 0])
            counts[0] += 1
            counts[1] += label["is_fraud"]
    return [[day, *counts] for day, counts in days.items()]


def label(tx_id: str, merchant: str, is_fraud: bool, labelled_at: datetime) -> dict[str, Any]:
    return label_of(
        {"transaction_id": tx_id, "merchant_id": merchant, "is_fraud": is_fraud}, labelled_at.isoformat()
    )


def test_labels_put_by_the_producer_update_their_merchants_profiles(labels_stack, since, tmp_path):
    rows: list[dict[str, Any]] = [
        {
            "transaction_id": f"cli-tx-{i:03d}",
            "user_id": f"cli-user-{i % 5}",
            "merchant_id": f"cli-merch-{i % 3}",
            "amount": 10.0 + i,
            "currency": "EUR",
            "timestamp": (NOW - timedelta(days=9, minutes=i)).isoformat(),
            "category": "grocery",
            "is_fraud": i % 4 == 0,
        }
        for i in range(30)
    ]
    path = tmp_path / "labelled.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    known = NOW - timedelta(hours=30)
    stream = labels_stack.outputs["StreamName"]
    options = ["--stream", stream, "--endpoint", labels_stack.endpoint_url, "--outputs", str(tmp_path / "x")]

    assert main(["produce", "--labels", str(path), "--labelled-at", known.isoformat(), *options]) == 0
    stats = run(labels_stack, since)

    merchants = merchant_profiles(labels_stack)
    day = int(known.timestamp() // DAY)
    for m in range(3):
        ours = [r for r in rows if r["merchant_id"] == f"cli-merch-{m}"]
        profile = merchants[f"cli-merch-{m}"]
        assert profile.days == [[day, len(ours), sum(r["is_fraud"] for r in ours)]]
        verdicts = [f"{r['transaction_id']}:{'fraud' if r['is_fraud'] else 'genuine'}" for r in ours]
        assert list(profile.applied_ids) == verdicts  # each once, in order
        assert len(profile.checkpoints) == 1  # one merchant, one shard: its single writer
    assert stats.records_delivered == len(rows)
    assert (stats.retries, stats.errors, stats.records_sent_to_on_failure) == (0, 0, 0)
    decisions = scan(
        labels_stack.client("dynamodb"), labels_stack.outputs["DecisionsTableName"], "transaction_id"
    )
    users = scan(labels_stack.client("dynamodb"), labels_stack.outputs["ProfilesTableName"], "user_id")
    assert not any(k.startswith("cli-") for k in [*decisions, *users])  # a label is no transaction


def _label_bytes(base: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps({**json.loads(label_payload(base)), **changes}).encode()


def _without(base: dict[str, Any], name: str) -> bytes:
    return json.dumps({k: v for k, v in json.loads(label_payload(base)).items() if k != name}).encode()


# kind -> (payload, the field the quarantine must name)
def malformed(base: dict[str, Any]) -> dict[str, tuple[bytes, str]]:
    return {
        "is_fraud a string": (_label_bytes(base, is_fraud="true", merchant_id="bad-merch-1"), "is_fraud"),
        "is_fraud a number": (_label_bytes(base, is_fraud=1, merchant_id="bad-merch-2"), "is_fraud"),
        "no merchant_id": (_without(base, "merchant_id"), "merchant_id"),
        "labelled_at without offset": (
            _label_bytes(base, labelled_at=NOW.replace(tzinfo=None).isoformat(), merchant_id="bad-merch-3"),
            "labelled_at",
        ),
        "labelled_at 8 days old": (
            _label_bytes(base, labelled_at=(NOW - timedelta(days=8)).isoformat(), merchant_id="bad-merch-4"),
            "labelled_at",
        ),
        "unknown event": (_label_bytes(base, event="chargeback", merchant_id="bad-merch-5"), "event"),
    }


def test_malformed_labels_are_quarantined_with_their_reason_and_change_nothing(labels_stack, since):
    dynamodb, sqs = labels_stack.client("dynamodb"), labels_stack.client("sqs")
    outputs = labels_stack.outputs
    tables = {
        "users": (outputs["ProfilesTableName"], "user_id"),
        "merchants": (outputs["MerchantProfilesTableName"], "merchant_id"),
        "decisions": (outputs["DecisionsTableName"], "transaction_id"),
    }
    before = {name: scan(dynamodb, table, key) for name, (table, key) in tables.items()}
    valid = label("bad-tx-0", "bad-merch-ok", True, NOW - timedelta(days=1))
    catalogue = malformed(valid)
    entries = [
        {"Data": data, "PartitionKey": f"bad-merch-{n}"} for n, (data, _) in enumerate(catalogue.values())
    ]
    entries.append({"Data": label_payload(valid), "PartitionKey": valid["merchant_id"]})
    response = labels_stack.client("kinesis").put_records(StreamName=outputs["StreamName"], Records=entries)
    assert response.get("FailedRecordCount", 0) == 0
    where = {
        (r["ShardId"], r["SequenceNumber"]): kind
        for r, kind in zip(response["Records"], catalogue, strict=False)
    }

    stats = run(labels_stack, since)

    quarantined = {
        where[(body["shard_id"], body["sequence_number"])]: (body["field"], body["reason"])
        for body, _ in drain_bodies(sqs, outputs["QuarantineQueueUrl"])
    }
    assert {kind: field for kind, (field, _) in quarantined.items()} == {
        kind: field for kind, (_, field) in catalogue.items()
    }
    assert all(reason for _, reason in quarantined.values())
    after = {name: scan(dynamodb, table, key) for name, (table, key) in tables.items()}
    assert after["users"] == before["users"]
    assert after["decisions"] == before["decisions"]
    assert set(after["merchants"]) == set(before["merchants"]) | {"bad-merch-ok"}  # the valid label only
    assert all(after["merchants"][m] == before["merchants"][m] for m in before["merchants"])
    assert merchant_profiles(labels_stack)["bad-merch-ok"].days == expected_days([valid], "bad-merch-ok")
    assert (stats.retries, stats.errors, stats.bisections, stats.records_sent_to_on_failure) == (0, 0, 0, 0)
    assert drain_bodies(sqs, outputs["OnFailureQueueUrl"]) == []


def read_back(stack: Embedded, since: float) -> dict[str, list[dict[str, Any]]]:
    """The records put since `since`, per shard in order, as Lambda-shaped records."""
    kinesis, stream = stack.client("kinesis"), stack.outputs["StreamName"]
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    by_shard: dict[str, list[dict[str, Any]]] = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        shard_id = shard["ShardId"]
        iterator = kinesis.get_shard_iterator(
            StreamName=stream,
            ShardId=shard_id,
            ShardIteratorType="AT_TIMESTAMP",
            Timestamp=datetime.fromtimestamp(since, UTC),
        )["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]
        by_shard[shard_id] = [
            lambda_record(
                r["Data"],
                partition_key=r["PartitionKey"],
                sequence_number=r["SequenceNumber"],
                arrival=r["ApproximateArrivalTimestamp"].timestamp(),
                shard_id=shard_id,
                stream_arn=arn,
            )
            for r in records
        ]
    return by_shard


def batches(by_shard: dict[str, list[dict[str, Any]]], size: int = 40) -> list[dict[str, Any]]:
    """Each shard's records cut into batches, the shards' batches interleaved, as the mapping delivers."""
    cut = {s: [rs[i : i + size] for i in range(0, len(rs), size)] for s, rs in by_shard.items()}
    return [
        {"Records": cut[s][i]}
        for i in range(max(map(len, cut.values()), default=0))
        for s in cut
        if i < len(cut[s])
    ]


def test_every_batch_redelivered_counts_each_label_once(labels_stack, since):
    rng = random.Random(13)
    merchants = [f"redo-merch-{m}" for m in range(6)]
    labels = [
        label(
            f"redo-tx-{i:04d}",
            rng.choice(merchants),
            rng.random() < 0.3,
            NOW - timedelta(hours=rng.randrange(0, 96)),
        )
        for i in range(180)
    ]
    produce(
        labels_stack.client("kinesis"),
        labels_stack.outputs["StreamName"],
        labels,
        progress=False,
        unit="label",
    )
    events = batches(read_back(labels_stack, since))
    assert sum(len(e["Records"]) for e in events) == len(labels)

    deliveries, redelivered = noisy_deliveries(events, rng)
    for records in deliveries:
        invoke(labels_stack.handler, records)
    stats = run(labels_stack, since)  # and the mapping's own delivery, once more through the runner

    stored = merchant_profiles(labels_stack)
    assert redelivered > len(labels)  # more than one redelivery per label on average
    assert stats.records_delivered == len(labels)
    for merchant in merchants:
        assert stored[merchant].days == expected_days(labels, merchant)
        ids = [
            f"{lb['transaction_id']}:{'fraud' if lb['is_fraud'] else 'genuine'}"
            for lb in labels
            if lb["merchant_id"] == merchant
        ]
        assert list(stored[merchant].applied_ids) == ids  # each once, in the order put
    assert sum(row[1] for m in merchants for row in stored[m].days) == len(labels)


@pytest.fixture
def spy(labels_stack: Embedded) -> Iterator[ModelSpy]:
    """The stack's handler scoring through a spy that keeps each feature row it scores."""
    service = inspect.unwrap(labels_stack.handler).__globals__["service"]
    original = service._models
    spied = ModelSpy(original.current().champion)
    service._models = FixedLineup(original.current()._replace(champion=spied))
    try:
        yield spied
    finally:
        service._models = original


def payment(tx_id: str, user: str, merchant: str, amount: float) -> dict[str, Any]:
    return {
        "transaction_id": tx_id,
        "user_id": user,
        "merchant_id": merchant,
        "amount": amount,
        "currency": "EUR",
        "timestamp": NOW.isoformat(),
        "category": "electronics",
    }


def test_a_later_days_payment_is_scored_with_its_merchants_fraud_rate(labels_stack, spy, since):
    kinesis, stream = labels_stack.client("kinesis"), labels_stack.outputs["StreamName"]
    two_days_ago = NOW - timedelta(days=2)
    labels = [
        label("risk-tx-1", "risk-merch", True, two_days_ago),
        label("risk-tx-2", "risk-merch", True, two_days_ago),
        label("risk-tx-3", "risk-merch", True, two_days_ago),
        label("risk-tx-4", "risk-merch", False, two_days_ago),
        label("fresh-tx-1", "fresh-merch", True, NOW),  # known today: counts from tomorrow
    ]
    produce(kinesis, stream, labels, progress=False, unit="label")
    run(labels_stack, since)  # labels and payments ride different shards: the labels first, then
    paid_since = time.time() - 0.001
    payments = [
        payment("risk-pay-1", "risk-user-1", "risk-merch", 41.0),
        payment("risk-pay-2", "risk-user-2", "fresh-merch", 42.0),
        payment("risk-pay-3", "risk-user-3", "unlabelled-merch", 43.0),
    ]
    produce(kinesis, stream, payments, progress=False)
    run(labels_stack, paid_since)

    scored = {row[0]: row for row in spy.rows}  # by amount
    seen = {amount: dict(zip(FEATURE_NAMES, row, strict=True)) for amount, row in scored.items()}
    risky = seen[41.0]
    assert risky["merchant_labels_7d"] == 4.0
    assert risky["merchant_fraud_rate_7d"] == 0.75
    assert risky["merchant_fraud_rate_30d"] == 0.75
    assert risky["merchant_labels_1d"] == 0.0  # two days ago is not yesterday
    assert seen[42.0]["merchant_labels_7d"] == 0.0  # today's label is not known to today's features
    assert seen[43.0]["merchant_labels_30d"] == 0.0

    # What the handler scored is what the domain computes on the stored profiles, and the decision's score
    stored = merchant_profiles(labels_stack)
    decisions = scan(
        labels_stack.client("dynamodb"), labels_stack.outputs["DecisionsTableName"], "transaction_id"
    )
    for tx in payments:
        parsed = parse_event(json.dumps(tx).encode(), received_at=time.time())
        assert isinstance(parsed, Transaction)
        expected = features(UserProfile(parsed.user_id), stored.get(parsed.merchant_id), parsed)
        np.testing.assert_array_equal(np.array(scored[tx["amount"]]), np.array(expected))
        score = float(decisions[tx["transaction_id"]]["score"]["N"])
        assert score == float(spy._model.score([scored[tx["amount"]]])[0])
