"""The boto3 adapters against moto: DynamoDB stores, SNS alerts, SQS quarantine."""

import base64
import json
import threading
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from fraudwatch.adapters.aws import ATTEMPTS
from fraudwatch.adapters.dynamodb import (
    DynamoDecisionStore,
    DynamoProfileStore,
    decision_item,
    decision_of,
    stored_state,
)
from fraudwatch.adapters.sns import SnsAlertPublisher
from fraudwatch.adapters.sqs import SqsQuarantine
from fraudwatch.domain.decision import Decision, DecisionRecord, Reason, Thresholds
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.records import QuarantinedRecord, StreamRecord
from fraudwatch.errors import AlertPublishError, DecisionStoreError, ProfileStoreError, QuarantineError
from tests.adapters.conftest import REGION, drain


class Recording:
    """A DynamoDB client that records each BatchGetItem's RequestItems and passes it on."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.requests: list[dict[str, Any]] = []

    @property
    def calls(self) -> int:
        return len(self.requests)

    def batch_get_item(self, RequestItems):
        self.requests.append(RequestItems)
        return self._client.batch_get_item(RequestItems=RequestItems)


class HalfProcessed(Recording):
    """A DynamoDB client that, on its first batch call, leaves part of every table's request unprocessed.

    It records each call's RequestItems.
    """

    def batch_write_item(self, RequestItems):
        self.requests.append(RequestItems)
        ((table, requests),) = RequestItems.items()
        if self.calls > 1:
            return self._client.batch_write_item(RequestItems=RequestItems)
        half = len(requests) // 2
        self._client.batch_write_item(RequestItems={table: requests[:half]})
        return {"UnprocessedItems": {table: requests[half:]}}

    def batch_get_item(self, RequestItems):
        self.requests.append(RequestItems)
        if self.calls > 1:
            return self._client.batch_get_item(RequestItems=RequestItems)
        first = {table: {**request, "Keys": request["Keys"][:1]} for table, request in RequestItems.items()}
        response = self._client.batch_get_item(RequestItems=first)
        response["UnprocessedKeys"] = {
            table: {**request, "Keys": request["Keys"][1:]} for table, request in RequestItems.items()
        }
        return response


class NeverProcessed(HalfProcessed):
    """A DynamoDB client under throttling that never ends: every key is left unprocessed, every time."""

    def batch_get_item(self, RequestItems):
        self.requests.append(RequestItems)
        return {"Responses": {}, "UnprocessedKeys": RequestItems}


class ThrottledMerchant:
    """A DynamoDB client that throttles, on every attempt, each BatchWriteItem chunk holding one merchant."""

    def __init__(self, client: Any, merchant_id: str) -> None:
        self._client = client
        self._key = {"S": merchant_id}

    def batch_write_item(self, RequestItems):
        ((_, requests),) = RequestItems.items()
        if any(r["PutRequest"]["Item"].get("merchant_id") == self._key for r in requests):
            error: Any = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
            raise ClientError(error, "BatchWriteItem")
        return self._client.batch_write_item(RequestItems=RequestItems)


def no_sleep(_: float) -> None:
    pass


def profile(user_id: str, amounts: list[float]) -> UserProfile:
    p = UserProfile(user_id, count=len(amounts), mean=sum(amounts) / len(amounts))
    p.recent_epochs = [1.0 * i for i in range(len(amounts))]
    p.recent_amounts = amounts
    p.merchants.touch("merch-1")
    p.mark_applied("tx-1", "shardId-000000000000", "12345678901234567890123456789")
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


def merchant(merchant_id: str, labels: int, frauds: int) -> MerchantProfile:
    p = MerchantProfile(merchant_id, days=[[20_400, labels, frauds], [20_401, 1, 0]])
    p.mark_applied("tx-9", "shardId-000000000001", "98765432109876543210")
    return p


def store(stack, client: Any = None) -> DynamoProfileStore:
    return DynamoProfileStore(
        stack["ProfilesTableName"], stack["MerchantProfilesTableName"], client, sleep=no_sleep
    )


def test_profiles_round_trip_in_chunks_of_one_hundred(stack):
    profiles = [profile(f"user-{i}", [10.0, 20.0 + i]) for i in range(150)]
    assert store(stack).put_many(profiles) == set()
    found = store(stack).get_many([p.user_id for p in profiles] + ["user-unknown"])
    assert len(found.users) == 150
    assert found.merchants == {}
    assert found.users["user-7"] == profiles[7]
    assert found.users["user-7"].checkpoints == {"shardId-000000000000": "12345678901234567890123456789"}


def test_merchant_profiles_round_trip_in_their_own_table(stack):
    merchants = [merchant(f"merch-{i}", labels=3 + i, frauds=i % 3) for i in range(30)]
    assert store(stack).put_merchants(merchants) == set()
    found = store(stack).get_many([], [m.merchant_id for m in merchants] + ["merch-unknown"])
    assert found.users == {}
    assert found.merchants == {m.merchant_id: m for m in merchants}
    assert found.merchants["merch-4"].days == [[20_400, 7, 1], [20_401, 1, 0]]
    item = boto3.client("dynamodb").get_item(
        TableName=stack["MerchantProfilesTableName"], Key={"merchant_id": {"S": "merch-4"}}
    )["Item"]
    assert set(item) == {"merchant_id", "state", "updated_at"}
    assert MerchantProfile.from_json("merch-4", stored_state(item)) == merchants[4]
    assert not boto3.client("dynamodb").scan(TableName=stack["ProfilesTableName"])["Items"]


@pytest.mark.parametrize(("users", "merchants", "calls"), [(40, 60, 1), (95, 40, 2), (0, 150, 2)])
def test_users_and_merchants_share_each_read_call_one_hundred_keys_at_a_time(stack, users, merchants, calls):
    writer = store(stack)
    writer.put_many([profile(f"user-{i}", [5.0]) for i in range(users)])
    writer.put_merchants([merchant(f"merch-{i}", 2, 1) for i in range(merchants)])
    client = Recording(boto3.client("dynamodb"))

    found = store(stack, client).get_many(
        [f"user-{i}" for i in range(users)], [f"merch-{i}" for i in range(merchants)]
    )

    assert (len(found.users), len(found.merchants)) == (users, merchants)
    assert client.calls == calls
    assert all(sum(len(r["Keys"]) for r in request.values()) <= 100 for request in client.requests)
    for request in client.requests:
        assert all(r["ConsistentRead"] is True for r in request.values())
    if users and merchants and calls == 1:
        (request,) = client.requests
        assert set(request) == {stack["ProfilesTableName"], stack["MerchantProfilesTableName"]}


def test_unprocessed_writes_and_reads_are_retried_for_both_tables(stack):
    assert store(stack).put_many([profile(f"user-{i}", [5.0]) for i in range(10)]) == set()
    client = HalfProcessed(boto3.client("dynamodb"))
    assert store(stack, client).put_merchants([merchant(f"merch-{i}", 1, 0) for i in range(10)]) == set()
    assert client.calls == 2

    reader = HalfProcessed(boto3.client("dynamodb"))
    found = store(stack, reader).get_many([f"user-{i}" for i in range(10)], [f"merch-{i}" for i in range(10)])

    assert (len(found.users), len(found.merchants)) == (10, 10)
    assert reader.calls == 2
    retried = reader.requests[1]
    assert {table: len(r["Keys"]) for table, r in retried.items()} == {
        stack["ProfilesTableName"]: 9,
        stack["MerchantProfilesTableName"]: 9,
    }


def test_keys_left_unread_after_every_attempt_are_a_store_error(stack):
    client = NeverProcessed(boto3.client("dynamodb"))
    with pytest.raises(ProfileStoreError) as raised:
        store(stack, client).get_many(["user-1"], ["merch-1"])
    assert client.calls == ATTEMPTS
    assert (raised.value.code, raised.value.retryable) == ("UnprocessedKeys", True)
    assert raised.value.operation == "BatchGetItem"
    assert raised.value.unwritten == frozenset({"user-1", "merch-1"})


def test_a_missing_table_is_a_permanent_store_error_on_read_and_on_write(aws):
    missing = DynamoProfileStore("no-such-table", "no-such-merchant-table", sleep=no_sleep)
    with pytest.raises(ProfileStoreError) as read_users:
        missing.get_many(["user-1"])
    with pytest.raises(ProfileStoreError) as read_merchants:
        missing.get_many([], ["merch-1"])
    with pytest.raises(ProfileStoreError) as write_users:
        missing.put_many([profile("user-1", [1.0])])
    with pytest.raises(ProfileStoreError) as write_merchants:
        missing.put_merchants([merchant("merch-1", 1, 1), merchant("merch-2", 1, 0)])

    for raised in (read_users, read_merchants, write_users, write_merchants):
        assert (raised.value.code, raised.value.retryable) == ("ResourceNotFoundException", False)
    assert (read_users.value.operation, read_users.value.resource) == ("BatchGetItem", "no-such-table")
    assert write_users.value.unwritten == frozenset({"user-1"})
    assert write_merchants.value.unwritten == frozenset({"merch-1", "merch-2"})
    assert write_merchants.value.resource == "no-such-merchant-table"


def test_unwritten_merchants_are_reported_and_the_rest_written(stack):
    client = ThrottledMerchant(boto3.client("dynamodb"), "merch-03")
    merchants = [merchant(f"merch-{i:02d}", 1, 0) for i in range(30)]

    with pytest.raises(ProfileStoreError) as raised:
        store(stack, client).put_merchants(merchants)

    unwritten = raised.value.unwritten
    assert unwritten == frozenset(f"merch-{i:02d}" for i in range(25))  # the chunk of 25 holding merch-03
    assert (raised.value.code, raised.value.retryable) == ("ProvisionedThroughputExceededException", True)
    stored = store(stack).get_many([], [m.merchant_id for m in merchants]).merchants
    assert set(stored) == {m.merchant_id for m in merchants} - unwritten


def test_one_table_for_both_kinds_is_refused(aws):
    with pytest.raises(ValueError, match="tables of their own"):
        DynamoProfileStore("profiles", "profiles")


def test_decisions_are_queryable_by_user_over_time_and_expire(stack):
    store = DynamoDecisionStore(stack["DecisionsTableName"])
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
    assert item["reasons"] == {  # a list of maps, queryable as data
        "L": [{"M": {"feature": {"S": "amount_zscore"}, "value": {"N": "8.2"}, "contribution": {"N": "1.7"}}}]
    }
    assert decision_of(item).reasons == (Reason("amount_zscore", 8.2, 1.7),)
    assert int(item["expires_at"]["N"]) == 1_796_007_601 + 90 * 86400
    by_user = client.query(
        TableName=stack["DecisionsTableName"],
        IndexName="by-user",
        KeyConditionExpression="user_id = :u AND decided_at >= :t",
        ExpressionAttributeValues={":u": {"S": "user-1"}, ":t": {"S": "2026-11-30"}},
    )
    assert sorted(i["transaction_id"]["S"] for i in by_user["Items"]) == ["tx-1", "tx-2"]


def test_decisions_are_read_by_key_one_hundred_at_a_time_what_is_unprocessed_again(stack):
    written = [decision(f"tx-{i:03d}") for i in range(150)]
    DynamoDecisionStore(stack["DecisionsTableName"]).put_many(written)
    reader: Any = HalfProcessed(boto3.client("dynamodb"))
    store = DynamoDecisionStore(stack["DecisionsTableName"], reader, sleep=no_sleep)

    found = list(store.get_many(["tx-missing", *(d.transaction_id for d in reversed(written))]))

    assert sorted(found) == written  # the missing one left out, none twice
    keys = [len(r[stack["DecisionsTableName"]]["Keys"]) for r in reader.requests]
    assert keys == [100, 99, 51]  # the first call half-processed: its 99 read again, then the rest


def test_decisions_left_unread_after_every_attempt_are_a_store_error(stack):
    client: Any = NeverProcessed(boto3.client("dynamodb"))
    store = DynamoDecisionStore(stack["DecisionsTableName"], client, sleep=no_sleep)
    with pytest.raises(DecisionStoreError) as raised:
        list(store.get_many(["tx-1", "tx-2"]))
    assert client.calls == ATTEMPTS
    assert (raised.value.code, raised.value.operation) == ("UnprocessedKeys", "BatchGetItem")
    assert raised.value.unwritten == frozenset({"tx-1", "tx-2"})


def test_payments_are_read_by_the_day_they_were_made_not_the_day_decided(stack):
    store = DynamoDecisionStore(stack["DecisionsTableName"])
    late = decision("tx-late")._replace(  # made at 23:30 on the 29th, decided on the 30th
        transaction_time="2026-11-30T01:30:00+02:00", merchant_id="merch-2", user_id="user-9"
    )
    store.put_many([decision("tx-1"), decision("tx-2", "user-2"), late])
    day = 20_787  # 2026-11-30

    assert sorted(store.payments_on([day])) == [("merch-1", "user-1", day), ("merch-1", "user-2", day)]
    assert list(store.payments_on([day - 1])) == [("merch-2", "user-9", day - 1)]
    assert list(store.payments_on([day + 1, day - 2])) == []


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
    publisher = SnsAlertPublisher("arn:aws:sns:us-east-1:123456789012:missing.fifo", sleep=no_sleep)
    with pytest.raises(AlertPublishError) as raised:
        publisher.publish_many([decision("tx-1"), decision("tx-2")])
    assert raised.value.unwritten == frozenset({"tx-1", "tx-2"})
    assert (raised.value.code, raised.value.retryable) == ("NotFound", False)
    assert (raised.value.operation, raised.value.resource) == ("PublishBatch", "missing.fifo")


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
    assert message["MessageAttributes"]["record_id"]["StringValue"] == "shardId-000000000001:42"


def test_unsendable_quarantine_records_are_reported(aws):
    quarantine = SqsQuarantine("https://sqs.us-east-1.amazonaws.com/123456789012/missing", sleep=no_sleep)
    record = StreamRecord("shardId-000000000001", "42", b"x", 1_796_000_000.0)
    with pytest.raises(QuarantineError) as raised:
        quarantine.put_many([QuarantinedRecord(record, "payload", "bad")])
    assert raised.value.unwritten == frozenset({"42"})
    assert (raised.value.code, raised.value.retryable) == ("AWS.SimpleQueueService.NonExistentQueue", False)
    assert (raised.value.operation, raised.value.resource) == ("SendMessageBatch", "missing")


class RecordingTransactions:
    """A DynamoDB client that records each TransactWriteItems call's puts and passes it on."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.transactions: list[list[str]] = []

    def transact_write_items(self, **kwargs):
        self.transactions.append([a["Put"]["Item"]["user_id"]["S"] for a in kwargs["TransactItems"]])
        return self._client.transact_write_items(**kwargs)

    def batch_get_item(self, RequestItems):
        return self._client.batch_get_item(RequestItems=RequestItems)


def test_user_profiles_are_written_conditionally_one_hundred_a_transaction_with_their_version(stack):
    client = RecordingTransactions(boto3.client("dynamodb"))
    profiles = [profile(f"user-{i}", [5.0]) for i in range(150)]

    assert store(stack, client).put_many(profiles) == set()

    assert [len(t) for t in client.transactions] == [100, 50]
    assert {p.version for p in profiles} == {1}
    read = store(stack).get_many(["user-7"]).users["user-7"]
    assert (read, read.version) == (profiles[7], 1)


def test_a_profile_another_writer_changed_since_the_read_is_a_conflict_and_the_others_are_written(stack):
    writer = store(stack)
    writer.put_many([profile("user-1", [5.0]), profile("user-2", [6.0])])
    mine = writer.get_many(["user-1", "user-2"]).users
    theirs = writer.get_many(["user-1"]).users["user-1"]
    theirs.count = 99
    assert writer.put_many([theirs]) == set()  # the other writer wins the race
    mine["user-1"].count = mine["user-2"].count = 7
    brand_new = profile("user-3", [1.0])
    also_new = profile("user-1", [2.0])  # "new" to a writer that found none, but one exists

    conflicts = writer.put_many([mine["user-1"], mine["user-2"], brand_new])

    assert conflicts == {"user-1"}
    stored = writer.get_many(["user-1", "user-2", "user-3"]).users
    assert (stored["user-1"].count, stored["user-1"].version) == (99, 2)
    assert (stored["user-2"].count, stored["user-2"].version) == (7, 2)
    assert stored["user-3"].version == 1
    assert writer.put_many([also_new]) == {"user-1"}


def decisions_store(stack, client: Any = None) -> DynamoProfileStore:
    return DynamoProfileStore(
        stack["ProfilesTableName"],
        stack["MerchantProfilesTableName"],
        client,
        sleep=no_sleep,
        decisions_table_name=stack["DecisionsTableName"],
    )


def test_a_decision_is_written_in_its_profiles_transaction_and_not_at_all_when_the_profile_conflicts(stack):
    client = RecordingTransactions(boto3.client("dynamodb"))
    writer = decisions_store(stack, client)
    writer.put_many([profile("user-1", [5.0])])
    stale = writer.get_many(["user-1"]).users["user-1"]
    fresh = writer.get_many(["user-1"]).users["user-1"]
    client.transactions.clear()

    assert writer.put_many([fresh], [decision("tx-2")]) == set()
    assert writer.put_many([stale], [decision("tx-3")]) == {"user-1"}

    assert [len(t) for t in client.transactions] == [2, 2]  # one call each: the profile and its decision
    decisions = DynamoDecisionStore(stack["DecisionsTableName"])
    assert decisions.get("tx-2") == decision("tx-2")
    assert decisions.get("tx-3") is None  # the profile conflicted: its decision was not written either
    assert (fresh.version, stale.version) == (2, 1)


def test_a_decision_on_another_users_transaction_id_is_never_written_over_it(stack):
    writer = decisions_store(stack)
    assert writer.put_many([profile("user-1", [5.0])], [decision("tx-1")]) == set()
    taken = decision("tx-1", "user-2", kind=Decision.APPROVED)

    assert writer.put_many([profile("user-2", [9.0])], [taken]) == {"user-2"}  # a conflict: re-read

    assert DynamoDecisionStore(stack["DecisionsTableName"]).get("tx-1") == decision("tx-1")
    read = writer.get_many(["user-1", "user-2"], [], ["tx-1", "tx-unknown"])
    assert set(read.users) == {"user-1"}  # user-2's profile was not written either
    assert read.decided == {"tx-1": decision("tx-1")}  # read with the profiles, in the same call
    again = decision("tx-1", kind=Decision.REJECTED)  # its own user may write it again (a retry)
    assert writer.put_many([read.users["user-1"]], [again]) == set()


def test_a_conflict_cancels_the_others_and_they_are_written_again_with_their_decisions(stack):
    writer = decisions_store(stack)
    writer.put_many([profile("user-1", [5.0]), profile("user-2", [6.0])])
    stale = writer.get_many(["user-1", "user-2"]).users
    writer.put_many([writer.get_many(["user-1"]).users["user-1"]])  # user-1 moves on

    conflicts = writer.put_many(
        list(stale.values()),
        [decision("tx-1", "user-1"), decision("tx-2", "user-2"), decision("tx-3", "user-2")],
    )

    assert conflicts == {"user-1"}
    decisions = DynamoDecisionStore(stack["DecisionsTableName"])
    assert [decisions.get(tx) is not None for tx in ("tx-1", "tx-2", "tx-3")] == [False, True, True]
    assert writer.get_many(["user-2"]).users["user-2"].version == 2


def test_decisions_without_a_decisions_table_are_refused(stack):
    with pytest.raises(ValueError, match="no decisions table"):
        store(stack).put_many([profile("user-1", [5.0])], [decision("tx-1")])


def test_a_profile_stored_before_versions_is_read_as_version_0_and_written_once(stack):
    dynamodb = boto3.client("dynamodb")
    legacy = profile("user-1", [5.0])
    dynamodb.put_item(
        TableName=stack["ProfilesTableName"],
        Item={"user_id": {"S": "user-1"}, "state": {"S": legacy.to_json()}},
    )
    first, second = (store(stack).get_many(["user-1"]).users["user-1"] for _ in range(2))
    assert first.version == second.version == 0

    assert store(stack).put_many([first]) == set()
    assert store(stack).put_many([second]) == {"user-1"}


def test_the_emulators_cancelled_transaction_of_profiles_writes_none_of_them(stack):
    from infra.emulator import atomic_transactions

    atomic_transactions()
    writer = store(stack)
    writer.put_many([profile(f"user-{i}", [5.0]) for i in range(5)])
    read = writer.get_many([f"user-{i}" for i in range(5)]).users
    writer.put_many([read["user-2"]])  # another writer: user-2 moves on
    dynamodb = boto3.client("dynamodb")
    items: Any = [
        {
            "Put": {
                "TableName": stack["ProfilesTableName"],
                "Item": {"user_id": {"S": user_id}, "state": {"S": "{}"}, "version": {"N": "2"}},
                "ConditionExpression": "version = :read",
                "ExpressionAttributeValues": {":read": {"N": "1"}},
            }
        }
        for user_id in read
    ]

    with pytest.raises(ClientError) as cancelled:
        dynamodb.transact_write_items(TransactItems=items)

    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    after = writer.get_many(list(read)).users
    assert {u: p.version for u, p in after.items()} == {
        "user-0": 1,
        "user-1": 1,
        "user-2": 2,
        "user-3": 1,
        "user-4": 1,
    }
    assert all(after[u] == read[u] for u in read if u != "user-2")  # nothing of the others was written


def test_the_emulators_cancelled_transaction_loses_no_write_made_meanwhile(stack, monkeypatch):
    # moto rolls a cancelled transaction back by putting back a copy of the whole table taken when it
    # began: a profile written by another request meanwhile (the stream's and the API's writers at
    # once) was lost. The embedded emulator makes each write wait for a transaction under way.
    import moto.dynamodb.models as models

    from infra.emulator import atomic_transactions

    atomic_transactions()
    writer = store(stack)
    writer.put_many([profile("user-1", [5.0])])
    stale = writer.get_many(["user-1"]).users["user-1"]
    writer.put_many([writer.get_many(["user-1"]).users["user-1"]])  # user-1 moves on: `stale` conflicts
    began, go_on = threading.Event(), threading.Event()
    get_item = models.DynamoDBBackend.get_item

    def slow_get_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "cancelled":  # inside the transaction, after its journal
            began.set()
            go_on.wait(5)
        return get_item(self, *args, **kwargs)

    monkeypatch.setattr(models.DynamoDBBackend, "get_item", slow_get_item)
    conflicts: list[set[str]] = []
    cancelled = threading.Thread(target=lambda: conflicts.append(writer.put_many([stale])), name="cancelled")
    cancelled.start()
    assert began.wait(5)
    meanwhile = threading.Thread(target=lambda: writer.put_many([profile("user-2", [7.0])]))
    meanwhile.start()
    meanwhile.join(0.5)  # the write waits for the transaction under way (without the lock: done, then lost)
    go_on.set()
    cancelled.join(5)
    meanwhile.join(5)

    assert conflicts == [{"user-1"}]
    assert writer.get_many(["user-2"]).users["user-2"].count == 1


# An item of each of the template's key schemas: a hash key alone, and a hash and a range key (the same
# list, so the items share moto's storage of their hash key).
ITEM_KEYS: dict[str, Callable[[int], dict[str, Any]]] = {
    "ProfilesTableName": lambda i: {"user_id": {"S": f"user-{i}"}},
    "ListsTableName": lambda i: {"list_name": {"S": "blocked_cards"}, "value": {"S": f"card-{i}"}},
}


@pytest.mark.parametrize("table", list(ITEM_KEYS))
@pytest.mark.parametrize("failure", ["a condition", "an item twice"])
def test_the_emulators_failed_transaction_is_undone_item_by_item_with_no_copy_of_its_table(
    stack, monkeypatch, table, failure
):
    import copy

    import moto.dynamodb.models as models
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models.table import Table

    from infra.emulator import atomic_transactions

    atomic_transactions()
    name, key = stack[table], ITEM_KEYS[table]
    dynamodb = boto3.client("dynamodb")
    dynamodb.put_item(TableName=name, Item=key(1) | {"n": {"N": "1"}})
    dynamodb.put_item(TableName=name, Item=key(3) | {"n": {"N": "7"}})
    stored = models.dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].tables[name]
    tables_copied: list[Any] = []
    deepcopy = copy.deepcopy

    def recording_deepcopy(obj: Any, memo: Any = None) -> Any:
        if isinstance(obj, Table):
            tables_copied.append(obj)
        return deepcopy(obj, memo)

    monkeypatch.setattr(copy, "deepcopy", recording_deepcopy)
    fails: Any = {
        "a condition": {
            "ConditionCheck": {
                "TableName": name,
                "Key": key(3),
                "ConditionExpression": "n = :none",
                "ExpressionAttributeValues": {":none": {"N": "0"}},
            }
        },
        "an item twice": {"Delete": {"TableName": name, "Key": key(2)}},
    }[failure]
    items: Any = [
        {
            "Update": {
                "TableName": name,
                "Key": key(1),
                "UpdateExpression": "SET n = n + :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        },
        {"Put": {"TableName": name, "Item": key(2) | {"n": {"N": "2"}}}},
        fails,
    ]

    with pytest.raises(ClientError) as failed:
        dynamodb.transact_write_items(TransactItems=items)

    code = {"a condition": "TransactionCanceledException", "an item twice": "ValidationException"}[failure]
    assert failed.value.response["Error"]["Code"] == code
    assert dynamodb.get_item(TableName=name, Key=key(1))["Item"] == key(1) | {"n": {"N": "1"}}
    assert "Item" not in dynamodb.get_item(TableName=name, Key=key(2))
    assert dynamodb.get_item(TableName=name, Key=key(3))["Item"] == key(3) | {"n": {"N": "7"}}
    assert dynamodb.scan(TableName=name)["Count"] == 2
    assert models.dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].tables[name] is stored
    assert tables_copied == []


def test_a_decision_stored_before_reasons_were_maps_reads_back_the_same(aws: None) -> None:
    item = {
        "transaction_id": {"S": "tx-old"},
        "user_id": {"S": "user-1"},
        "merchant_id": {"S": "merch-1"},
        "amount": {"N": "12.5"},
        "currency": {"S": "EUR"},
        "transaction_time": {"S": "2026-11-30T03:00:00+00:00"},
        "decision": {"S": "FLAGGED"},
        "score": {"N": "0.6"},
        "model_version": {"S": "m-1"},
        "flag_threshold": {"N": "0.5"},
        "reject_threshold": {"N": "0.9"},
        "decided_at": {"S": "2026-11-30T03:00:01+00:00"},
        "reasons": {"S": '[{"feature": "amount", "value": null, "contribution": 0.4}]'},
        "rules_version": {"S": "v1"},
        "rule_reasons": {"S": '["rule:night"]'},
    }
    decided = decision_of(item)
    assert decided.reasons == (Reason("amount", None, 0.4),)
    assert decided.rule_reasons == ("rule:night",)
    rewritten = decision_item(decided)
    assert rewritten["reasons"]["L"][0]["M"]["value"] == {"NULL": True}
    assert decision_of(rewritten) == decided
