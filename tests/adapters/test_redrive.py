"""`fraudwatch redrive`: ranges the mapping gave up on, read back from the stream and decided, on moto."""

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from fraudwatch.domain.records import StreamRecord
from fraudwatch.settings import Settings
from fraudwatch.wiring import build_service
from infra import runner
from infra.events import contract_payload
from infra.redrive import redrive
from tests.adapters.conftest import drain

STREAM = "test-transactions"


def transaction(i: int, minutes: int) -> dict[str, Any]:
    return {
        "transaction_id": f"tx-{i}",
        "user_id": "user-1",
        "merchant_id": "merch-1",
        "amount": 25.0 + i,
        "currency": "USD",
        "timestamp": (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat(),
        "category": "grocery",
    }


@pytest.fixture
def setup(stack, tiny_bundle):
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=STREAM, ShardCount=1)
    stream = kinesis.describe_stream(StreamName=STREAM)["StreamDescription"]
    settings = Settings(
        profiles_table=stack["ProfilesTableName"],
        merchant_profiles_table=stack["MerchantProfilesTableName"],
        decisions_table=stack["DecisionsTableName"],
        alerts_topic_arn=stack["AlertsTopicArn"],
        quarantine_queue_url=stack["QuarantineQueueUrl"],
        model_dir=tiny_bundle,
    )
    return build_service(settings), kinesis, stream


def put(kinesis, transactions: list[dict[str, Any]]) -> list[runner.ShardRecord]:
    put_records = []
    for tx in transactions:
        response = kinesis.put_record(
            StreamName=STREAM, Data=contract_payload(tx), PartitionKey=tx["user_id"]
        )
        put_records.append(runner.ShardRecord(response["SequenceNumber"], tx["user_id"], b"", time.time()))
    return put_records


def give_up(stack, stream, given_up: list[runner.ShardRecord], batch_size: int | None = None) -> None:
    """The message the mapping sends to the on-failure queue, with AWS's shape."""
    message = runner.on_failure_message(
        condition="RetryAttemptsExhausted",
        records=given_up,
        shard_id=stream["Shards"][0]["ShardId"],
        stream_arn=stream["StreamARN"],
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:scoring",
        invocation=None,
        invoke_count=6,
        now=time.time(),
    )
    if batch_size is not None:
        message["KinesisBatchInfo"]["batchSize"] = batch_size
    boto3.client("sqs").send_message(QueueUrl=stack["OnFailureQueueUrl"], MessageBody=json.dumps(message))


def decided(stack) -> set[str]:
    items = boto3.client("dynamodb").scan(TableName=stack["DecisionsTableName"])["Items"]
    return {i["transaction_id"]["S"] for i in items}


def stream_records(kinesis, stream) -> list[StreamRecord]:
    from infra.redrive import read_range

    shard = stream["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    first, last = records[0]["SequenceNumber"], records[-1]["SequenceNumber"]
    return list(read_range(kinesis, stream["StreamARN"], shard, first, last))


def test_a_given_up_range_is_decided_and_its_message_deleted(stack, setup):
    service, kinesis, stream = setup
    given_up = put(kinesis, [transaction(1, 30), transaction(2, 29)])
    later = put(kinesis, [transaction(3, 10)])
    all_records = stream_records(kinesis, stream)
    service.process([r for r in all_records if r.sequence_number == later[0].sequence_number])
    give_up(stack, stream, given_up)

    stats = redrive(service, kinesis=kinesis, sqs=boto3.client("sqs"), queue_url=stack["OnFailureQueueUrl"])
    assert (stats.redriven, stats.records, stats.decided, stats.kept) == (1, 2, 2, 0)
    assert decided(stack) == {"tx-1", "tx-2", "tx-3"}
    assert drain(stack["OnFailureQueueUrl"]) == []


def test_redriving_twice_changes_nothing(stack, setup):
    service, kinesis, stream = setup
    given_up = put(kinesis, [transaction(1, 30)])
    give_up(stack, stream, given_up)
    redrive(service, kinesis=kinesis, sqs=boto3.client("sqs"), queue_url=stack["OnFailureQueueUrl"])
    profile_before = boto3.client("dynamodb").scan(TableName=stack["ProfilesTableName"])["Items"]

    give_up(stack, stream, given_up)
    stats = redrive(service, kinesis=kinesis, sqs=boto3.client("sqs"), queue_url=stack["OnFailureQueueUrl"])
    assert (stats.decided, stats.duplicates) == (0, 1)
    assert boto3.client("dynamodb").scan(TableName=stack["ProfilesTableName"])["Items"] == profile_before


def test_a_range_no_longer_on_the_stream_is_kept_on_the_queue(stack, setup):
    service, kinesis, stream = setup
    given_up = put(kinesis, [transaction(1, 30)])
    give_up(stack, stream, given_up, batch_size=5)  # four of its records are past the retention
    stats = redrive(service, kinesis=kinesis, sqs=boto3.client("sqs"), queue_url=stack["OnFailureQueueUrl"])
    assert (stats.redriven, stats.kept) == (0, 1)
    assert decided(stack) == set()
