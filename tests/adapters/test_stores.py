"""The boto3 adapters against moto: DynamoDB stores, SNS alerts, SQS quarantine."""

import base64
import json
from typing import Any

import boto3
import pytest

from fraudwatch.adapters.dynamodb import DynamoDecisionStore, DynamoProfileStore
from fraudwatch.adapters.sns import SnsAlertPublisher
from fraudwatch.adapters.sqs import SqsQuarantine
from fraudwatch.domain.decision import Decision, DecisionRecord, Reason, Thresholds
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.records import QuarantinedRecord, StreamRecord
from fraudwatch.errors import ProfileStoreError
from tests.adapters.conftest import drain


class HalfProcessed:
    """A DynamoDB client that, on its first batch call, leaves half of the request unprocessed."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0

    def batch_write_item(self, RequestItems):
        self.calls += 1
        ((table, requests),) = RequestItems.items()
        if self.calls > 1:
            return self._client.batch_write_item(RequestItems=RequestItems)
        half = len(requests) // 2
        self._client.batch_write_item(RequestItems={table: requests[:half]})
        return {"UnprocessedItems": {table: requests[half:]}}

    def batch_get_item(self, RequestItems):
        self.calls += 1
        ((table, request),) = RequestItems.items()
        if self.calls > 1:
            return self._client.batch_get_item(RequestItems=RequestItems)
        keys = request["Keys"]
        response = self._client.batch_get_item(RequestItems={table: {**request, "Keys": keys[:1]}})
        response["UnprocessedKeys"] = {table: {**request, "Keys": keys[1:]}}
        return response


def no_sleep(_: float) -> None:
    pass


def profile(user_id: str, amounts: list[float]) -> UserProfile:
    p = UserProfile(user_id, count=len(amounts), mean=sum(amounts) / len(amounts))
    p.recent_epochs = [1.0 * i for i in range(len(amounts))]
    p.recent_amounts = amounts
    p.merchants = {"merch-1": None}
    p.mark_applied("tx-1", "shardId-000000000000", 12345678901234567890123456789)
    return p


def decision(tx: str, user: str = "user-1", kind: Decision = Decision.FLAGGED) -> DecisionRecord:
    return DecisionRecord(
        transaction_id=tx,
        user_id=user,
        merchant_id="merch-1",
        amount=950.0,
        currency="USD",
        transaction_time="2026-11-30T03:00:00+00:00",
        decision=kind,
        score=0.73,
        model_version="m-1",
        thresholds=Thresholds(0.5, 0.9),
        decided_at="2026-11-30T03:00:01+00:00",
        reasons=(Reason("amount_zscore", 8.2, 1.7),),
    )


def test_profiles_round_trip_in_chunks_of_one_hundred(stack):
    store = DynamoProfileStore(stack["ProfilesTableName"])
    profiles = [profile(f"user-{i}", [10.0, 20.0 + i]) for i in range(150)]
    assert store.put_many(profiles) == set()
    found = store.get_many([p.user_id for p in profiles] + ["user-unknown"])
    assert len(found) == 150
    assert found["user-7"] == profiles[7]
    assert found["user-7"].checkpoints == {"shardId-000000000000": 12345678901234567890123456789}


def test_unprocessed_writes_and_reads_are_retried(stack):
    client = HalfProcessed(boto3.client("dynamodb"))
    store = DynamoProfileStore(stack["ProfilesTableName"], client, sleep=no_sleep)
    assert store.put_many([profile(f"user-{i}", [5.0]) for i in range(10)]) == set()
    assert client.calls == 2
    reader = DynamoProfileStore(
        stack["ProfilesTableName"], HalfProcessed(boto3.client("dynamodb")), sleep=no_sleep
    )
    assert len(reader.get_many([f"user-{i}" for i in range(10)])) == 10


def test_a_missing_table_is_a_store_error_on_read_and_unwritten_keys_on_write(aws):
    store = DynamoProfileStore("no-such-table", sleep=no_sleep)
    with pytest.raises(ProfileStoreError):
        store.get_many(["user-1"])
    assert store.put_many([profile("user-1", [1.0])]) == {"user-1"}


def test_decisions_are_queryable_by_user_over_time_and_expire(stack):
    store = DynamoDecisionStore(stack["DecisionsTableName"], ttl_days=90)
    assert (
        store.put_many(
            [decision("tx-1"), decision("tx-2", kind=Decision.REJECTED), decision("tx-3", "user-2")]
        )
        == set()
    )
    client = boto3.client("dynamodb")
    item = client.get_item(TableName=stack["DecisionsTableName"], Key={"transaction_id": {"S": "tx-2"}})[
        "Item"
    ]
    assert item["decision"]["S"] == "REJECTED"
    assert float(item["score"]["N"]) == 0.73
    assert json.loads(item["reasons"]["S"]) == [
        {"feature": "amount_zscore", "value": 8.2, "contribution": 1.7}
    ]
    assert int(item["expires_at"]["N"]) == 1_796_007_601 + 90 * 86400
    by_user = client.query(
        TableName=stack["DecisionsTableName"],
        IndexName="by-user",
        KeyConditionExpression="user_id = :u AND decided_at >= :t",
        ExpressionAttributeValues={":u": {"S": "user-1"}, ":t": {"S": "2026-11-30"}},
    )
    assert sorted(i["transaction_id"]["S"] for i in by_user["Items"]) == ["tx-1", "tx-2"]


def test_alerts_carry_the_decision_and_the_transaction_as_alert_id(stack, alert_inbox):
    publisher = SnsAlertPublisher(stack["AlertsTopicArn"])
    assert publisher.publish_many([decision(f"tx-{i}") for i in range(12)]) == set()
    messages = drain(alert_inbox)
    assert len(messages) == 12
    body = json.loads(messages[0]["Body"])
    assert body["decision"] == "FLAGGED"
    assert body["reasons"][0]["feature"] == "amount_zscore"
    assert {m["MessageAttributes"]["alert_id"]["StringValue"] for m in messages} == {
        f"tx-{i}" for i in range(12)
    }


def test_unpublishable_alerts_are_reported(aws):
    publisher = SnsAlertPublisher("arn:aws:sns:us-east-1:123456789012:missing")
    assert publisher.publish_many([decision("tx-1"), decision("tx-2")]) == {"tx-1", "tx-2"}


def test_quarantine_keeps_the_payload_and_the_reason(stack):
    quarantine = SqsQuarantine(stack["QuarantineQueueUrl"])
    record = StreamRecord("shardId-000000000001", "42", b"\xff not json", 1_796_000_000.0)
    assert quarantine.put_many([QuarantinedRecord(record, "payload", "not valid UTF-8 at byte 0")]) == set()
    (message,) = drain(stack["QuarantineQueueUrl"])
    body = json.loads(message["Body"])
    assert body["field"] == "payload"
    assert body["reason"] == "not valid UTF-8 at byte 0"
    assert body["sequence_number"] == "42"
    assert base64.b64decode(body["payload_base64"]) == b"\xff not json"
    assert message["MessageAttributes"]["field"]["StringValue"] == "payload"


def test_unsendable_quarantine_records_are_reported(aws):
    quarantine = SqsQuarantine("https://sqs.us-east-1.amazonaws.com/123456789012/missing")
    record = StreamRecord("shardId-000000000001", "42", b"x", 1_796_000_000.0)
    assert quarantine.put_many([QuarantinedRecord(record, "payload", "bad")]) == {"42"}
