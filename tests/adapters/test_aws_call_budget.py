"""AWS calls per batch of 100 records through the handler's wiring, counted as bench/aws_calls.py counts.

The budget (at most 10) holds when a batch has at most 10 alerts: 1 read, 4 + 4 writes, 1 publish.
"""

import math

import boto3

from bench._common import TransactionStream
from bench.aws_calls import CallCounter
from fraudwatch.settings import Settings
from fraudwatch.wiring import build_service


def counted_service(stack, bundle):
    session = boto3.Session(region_name="us-east-1")
    counter = CallCounter({stack["ProfilesTableName"]: "profiles", stack["DecisionsTableName"]: "decisions"})
    session.events.register("provide-client-params.*.*", counter)
    env = {
        "PROFILES_TABLE": stack["ProfilesTableName"],
        "DECISIONS_TABLE": stack["DecisionsTableName"],
        "ALERTS_TOPIC_ARN": stack["AlertsTopicArn"],
        "QUARANTINE_QUEUE_URL": stack["QuarantineQueueUrl"],
        "MODEL_DIR": str(bundle),
    }
    return build_service(Settings.from_env(env), session), counter


def test_a_batch_over_95_users_reads_once_and_writes_in_chunks_of_25(stack, tiny_bundle):
    service, counter = counted_service(stack, tiny_bundle)
    stream = TransactionStream(users=300, seed=5, fraud_rate=0.0)
    service.process(stream.batch(100, distinct_users=95))
    counter.take()

    report = service.process(stream.batch(100, distinct_users=95))

    calls = counter.take()
    assert len(report.decisions) == 100
    assert calls["BatchGetItem (profiles)"] == 1
    assert calls["BatchWriteItem (decisions)"] == 4
    assert calls["BatchWriteItem (profiles)"] == 4
    alerts = sum(d.is_alert for d in report.decisions)
    assert calls["PublishBatch"] == math.ceil(alerts / 10)
    assert calls.total() == 1 + 4 + 4 + math.ceil(alerts / 10)


def test_a_batch_over_20_users_writes_their_profiles_in_one_call(stack, tiny_bundle):
    service, counter = counted_service(stack, tiny_bundle)
    stream = TransactionStream(users=20, seed=6, fraud_rate=0.0)

    service.process(stream.batch(100, distinct_users=20))

    calls = counter.take()
    assert calls["BatchWriteItem (profiles)"] == 1
    assert calls["BatchGetItem (profiles)"] == 1
    assert sum(n for op, n in calls.items() if op.startswith(("GetItem", "PutItem", "Publish "))) == 0
