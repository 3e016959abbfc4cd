"""AWS calls per batch of 100 records through the handler's wiring, counted as bench/aws_calls.py counts.

Reads: one BatchGetItem per 100 profile keys, the users' and the merchants' together. Writes: one
BatchWriteItem per 25 decisions and per 25 merchant profiles, one TransactWriteItems per 100 user
profiles (conditional on the version read: the inline API writes them too); one PublishBatch per 10
alerts. A realistic batch over 95 users pays at about as many merchants, so it needs two reads: 8 calls
with up to 10 alerts, and 9 when labels are in it (the merchants' write, which carries the labels'
verdicts for the matured metrics too: LabelsTable's items share its chunks), within the design's budget
of 10; the daily count's records of 100 merchants, 5. A transaction decided inline (the HTTP API)
costs one read and one TransactWriteItems of its decision and its profile, and a PublishBatch when it
alerts. Measured in docs/benchmarks.md.
"""

import json
import math
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from bench._common import TransactionStream
from bench.aws_calls import BUDGET, CallCounter, profile_keys, table_labels, with_labels
from fraudwatch.adapters.bundle import BUNDLE_FILES, COMPILED_FILES
from fraudwatch.adapters.dynamodb import DynamoDecisionStore
from fraudwatch.adapters.registry import ModelRegistry
from fraudwatch.domain.activity import MerchantActivity
from fraudwatch.domain.features import DAY
from fraudwatch.domain.records import StreamRecord
from fraudwatch.domain.scoring import ScoringService
from fraudwatch.settings import Settings
from fraudwatch.wiring import build_inline, build_service
from infra.models import challenge


def counted_session(
    stack: Mapping[str, str], bundle: Path, **overrides: str
) -> tuple[Settings, boto3.Session, CallCounter]:
    session = boto3.Session(region_name="us-east-1")
    env = {
        "PROFILES_TABLE": stack["ProfilesTableName"],
        "MERCHANT_PROFILES_TABLE": stack["MerchantProfilesTableName"],
        "DECISIONS_TABLE": stack["DecisionsTableName"],
        "LABELS_TABLE": stack["LabelsTableName"],
        "ALERTS_TOPIC_ARN": stack["AlertsTopicArn"],
        "QUARANTINE_QUEUE_URL": stack["QuarantineQueueUrl"],
        "MODEL_DIR": str(bundle),
    } | overrides
    counter = CallCounter(table_labels(env))
    session.events.register("provide-client-params.*.*", counter)
    return Settings.from_env(env), session, counter


def counted_service(stack: Mapping[str, str], bundle: Path) -> tuple[ScoringService, CallCounter]:
    settings, session, counter = counted_session(stack, bundle)
    return build_service(settings, session), counter


def reads(calls: Counter[str]) -> int:
    return sum(n for op, n in calls.items() if op.startswith("BatchGetItem"))


def test_a_batch_over_95_users_reads_its_users_and_merchants_together_and_writes_in_few_calls(
    stack, tiny_bundle
):
    service, counter = counted_service(stack, tiny_bundle)
    stream = TransactionStream(users=300, seed=5, fraud_rate=0.0)
    service.process(stream.batch(100, distinct_users=95))
    counter.take()
    batch = stream.batch(100, distinct_users=95)
    users, merchants = profile_keys(batch)

    report = service.process(batch)

    calls = counter.take()
    assert len(report.decisions) == 100
    assert users + merchants > 100  # realistic data: nearly every record at a merchant of its own
    assert calls["BatchGetItem (merchants, profiles)"] == 1
    assert reads(calls) == math.ceil((users + merchants) / 100) == 2
    assert calls["BatchWriteItem (decisions)"] == 4
    assert calls["TransactWriteItems (profiles)"] == 1  # 95 conditional puts, 100 a call
    assert calls["BatchWriteItem (profiles)"] == 0
    assert calls["BatchWriteItem (merchants)"] == 0  # no labels, nothing learnt
    alerts = sum(d.is_alert for d in report.decisions)
    assert calls["PublishBatch"] == math.ceil(alerts / 10)
    assert calls.total() == 2 + 4 + 1 + math.ceil(alerts / 10)
    assert calls.total() <= BUDGET


def test_a_batch_of_transactions_and_labels_writes_the_merchants_in_one_more_call(stack, tiny_bundle):
    service, counter = counted_service(stack, tiny_bundle)
    stream = TransactionStream(users=300, seed=8, fraud_rate=0.0)
    warm = stream.batch(100, distinct_users=95)
    service.process(warm)
    counter.take()
    (batch,) = with_labels([stream.batch(100, distinct_users=95)], earlier=warm, count=10)
    users, merchants = profile_keys(batch)

    report = service.process(batch)

    calls = counter.take()
    assert (len(report.decisions), report.labels, report.failed) == (90, 10, [])
    assert reads(calls) == math.ceil((users + merchants) / 100)
    assert calls["BatchWriteItem (decisions)"] == math.ceil(90 / 25)
    assert calls["TransactWriteItems (profiles)"] == math.ceil(users / 100)
    # ten labels at ten merchants: the profiles and the labels' verdicts in one shared call
    assert calls["BatchWriteItem (labels, merchants)"] == 1
    assert calls["BatchWriteItem (merchants)"] == calls["BatchWriteItem (labels)"] == 0
    alerts = sum(d.is_alert for d in report.decisions)
    assert calls.total() == reads(calls) + 4 + math.ceil(users / 100) + 1 + math.ceil(alerts / 10)


@pytest.mark.parametrize(("flag", "alerts"), [("1.0", 0), ("0.0", 1)], ids=["approved", "flagged (an alert)"])
def test_a_transaction_decided_inline_costs_a_read_and_one_transaction_and_a_publish_when_it_alerts(
    stack, tiny_bundle, flag, alerts
):
    settings, session, counter = counted_session(
        stack, tiny_bundle, FLAG_THRESHOLD=flag, REJECT_THRESHOLD="1.0"
    )
    inline = build_inline(settings, session)
    payments = TransactionStream(users=5, seed=8, fraud_rate=0.0)
    now = time.time()

    decided = [inline.decide(_recent(record.data, now)) for record in payments.batch(3)]

    calls = counter.take()
    assert [d.new for d in decided] == [True] * 3
    assert {d.decision.is_alert for d in decided} == {bool(alerts)}
    assert reads(calls) == 3
    assert calls["TransactWriteItems (decisions, profiles)"] == 3  # the decision inside its profile's
    assert calls["PublishBatch"] == 3 * alerts
    assert calls.total() == 3 * (2 + alerts)
    assert DynamoDecisionStore(settings.decisions_table).get(decided[0].decision.transaction_id) is not None


def _recent(data: bytes, now: float) -> bytes:
    """A generated payment moved to a minute ago: the API refuses timestamps over 7 days old."""
    body = json.loads(data)
    body["timestamp"] = datetime.fromtimestamp(now - 60, UTC).isoformat()
    return json.dumps(body).encode()


def test_a_batch_over_20_users_reads_once_writes_their_profiles_once_and_keeps_the_budget(stack, tiny_bundle):
    service, counter = counted_service(stack, tiny_bundle)
    stream = TransactionStream(users=20, seed=6, fraud_rate=0.0)
    batch = stream.batch(100, distinct_users=20)
    users, merchants = profile_keys(batch)

    service.process(batch)

    calls = counter.take()
    assert users + merchants <= 100
    assert reads(calls) == 1
    assert calls["TransactWriteItems (profiles)"] == 1
    assert sum(n for op, n in calls.items() if op.startswith(("GetItem", "PutItem", "Publish "))) == 0
    assert calls.total() <= BUDGET


def test_the_model_registry_and_drift_cost_no_call_in_a_steady_batch_only_their_periodic_reads(
    stack, tiny_bundle, tiny_challenger, tmp_path
):
    """With the lineup read every 15 s and drift written every 60 s, a batch between two of those reads
    spends what it spent before (the first batch of a container reads the lineup once)."""
    session = boto3.Session(region_name="us-east-1")
    env = {
        "PROFILES_TABLE": stack["ProfilesTableName"],
        "MERCHANT_PROFILES_TABLE": stack["MerchantProfilesTableName"],
        "DECISIONS_TABLE": stack["DecisionsTableName"],
        "ALERTS_TOPIC_ARN": stack["AlertsTopicArn"],
        "QUARANTINE_QUEUE_URL": stack["QuarantineQueueUrl"],
        "MODEL_DIR": str(tiny_bundle),
        "MODELS_BUCKET": stack["ModelsBucketName"],
        "MODELS_TABLE": stack["ModelsTableName"],
        "DRIFT_TABLE": stack["DriftTableName"],
        "MODEL_CACHE_DIR": str(tmp_path),
    }
    registry = ModelRegistry(stack["ModelsBucketName"], stack["ModelsTableName"])
    registry.publish(tiny_challenger, published_by="test", now=1.0)
    challenge(registry, "tiny-test-2", by="test", note="", now=2.0)
    counter = CallCounter(table_labels(env) | {stack["ModelsTableName"]: "models"})
    session.events.register("provide-client-params.*.*", counter)
    service = build_service(Settings.from_env(env), session)
    cold = counter.take()
    assert cold["GetItem (models)"] == 1  # the lineup, read once at cold start
    assert cold["GetObject"] == len(BUNDLE_FILES) + len(COMPILED_FILES)  # the challenger fetched once
    stream = TransactionStream(users=300, seed=9, fraud_rate=0.0)
    service.process(stream.batch(100, distinct_users=95))
    counter.take()

    report = service.process(stream.batch(100, distinct_users=95))

    calls = counter.take()
    assert all(d.challenger is not None for d in report.decisions)
    assert not {op for op in calls if "models" in op or op.startswith(("GetObject", "PutItem"))}
    assert calls.total() <= BUDGET


def test_a_label_heavy_batch_pays_its_labels_in_the_merchants_chunks_and_keeps_the_budget(stack, tiny_bundle):
    """20 labels at 20 merchants are 40 puts: two shared calls (one before labels were kept). The labels'
    items cost a call only past 25 puts: a batch of up to 12 labels at as many merchants pays nothing."""
    service, counter = counted_service(stack, tiny_bundle)
    stream = TransactionStream(users=300, seed=12, fraud_rate=0.0)
    warm = stream.batch(100, distinct_users=95)
    service.process(warm)
    counter.take()
    (batch,) = with_labels([stream.batch(100, distinct_users=95)], earlier=warm, count=20)
    users, _ = profile_keys(batch)

    report = service.process(batch)

    calls = counter.take()
    assert (len(report.decisions), report.labels, report.failed) == (80, 20, [])
    # 20 merchant profiles and 5 labels, then the other 15 labels
    assert (calls["BatchWriteItem (labels, merchants)"], calls["BatchWriteItem (labels)"]) == (1, 1)
    alerts = sum(d.is_alert for d in report.decisions)
    assert alerts <= 10
    assert calls.total() == reads(calls) + math.ceil(80 / 25) + math.ceil(users / 100) + 2 + math.ceil(
        alerts / 10
    )
    assert calls.total() <= BUDGET


def test_a_batch_of_100_merchants_days_of_payments_reads_and_writes_them_in_five_calls(stack, tiny_bundle):
    """The daily count's records (domain/activity.py) of 100 merchants: one read, four writes."""
    service, counter = counted_service(stack, tiny_bundle)
    now = time.time()
    yesterday = int(now // DAY) - 1
    batch = [
        StreamRecord(
            "shardId-000000000000",
            str(n + 1),
            json.dumps(
                {"event": "activity", **MerchantActivity(f"merch-{n:03d}", yesterday, 5, 4, 1).to_mapping()}
            ).encode(),
            arrival_epoch=now,
        )
        for n in range(100)
    ]

    report = service.process(batch)

    calls = counter.take()
    assert (report.activities, report.failed) == (100, [])
    assert reads(calls) == 1
    assert calls["BatchWriteItem (merchants)"] == 4
    assert calls.total() == 5
