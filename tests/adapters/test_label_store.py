"""Labels kept for the matured metrics (LabelsTable), written by the real handler with the merchant profiles
in the same BatchWriteItem calls, and the daily job's reads of labels and decisions, on moto."""

import inspect
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from fraudwatch.adapters.dynamodb import DynamoDecisionStore, packed_write
from fraudwatch.adapters.labels import DynamoLabelStore
from fraudwatch.domain.decision import Decision, DecisionRecord, Thresholds
from fraudwatch.domain.matured import latest_verdicts
from fraudwatch.errors import ProfileStoreError
from infra.events import contract_payload, event_from_payloads, instant
from infra.invoke import Handler, load_handler
from tests.adapters.test_handler import START, invoke, label_payload, merchant_profiles, transactions


@pytest.fixture
def handler(stack, tiny_bundle, restore_environ) -> Handler:
    """The scoring function's real handler (its template environment: LABELS_TABLE included)."""
    return load_handler(stack, bundle_dir=tiny_bundle)


def label_items(stack) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=stack["LabelsTableName"])["Items"]


def verdicts(stack) -> dict[str, bool]:
    return latest_verdicts(DynamoLabelStore(stack["LabelsTableName"]).known_since(0))


class BatchWrites:
    """Records the tables of each BatchWriteItem a client makes."""

    def __init__(self, client: Any) -> None:
        self.calls: list[list[str]] = []
        client.meta.events.register("before-call.dynamodb.BatchWriteItem", self)

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(sorted(json.loads(params["body"])["RequestItems"]))


def test_the_labels_of_a_batch_are_kept_in_the_merchants_write_and_a_redelivery_keeps_nothing_twice(
    handler, stack
):
    paid = transactions("user-l", [20, 25, 30])  # merch-0, merch-1, merch-2
    known = START + timedelta(days=1)
    labels = [label_payload(paid[0], True, known), label_payload(paid[1], False, known)]
    labels.append(label_payload(paid[0], True, known))  # the same label twice in the batch
    service = inspect.unwrap(handler).__globals__["service"]
    writes = BatchWrites(service._profiles._client)

    assert invoke(handler, event_from_payloads(labels, first_sequence=10)) == {"batchItemFailures": []}

    shared = [stack["LabelsTableName"], stack["MerchantProfilesTableName"]]
    assert writes.calls == [sorted(shared)]  # one call: two merchants, two labels
    items = label_items(stack)
    assert len(items) == 2
    assert {i["transaction_id"]["S"]: i["is_fraud"]["BOOL"] for i in items} == {
        paid[0]["transaction_id"]: True,
        paid[1]["transaction_id"]: False,
    }
    assert all(set(i) == {"transaction_id", "label", "merchant_id", "is_fraud", "labelled_at", "known_at",
                          "expires_at"} for i in items)  # fmt: skip  # no amount, no card data

    assert invoke(handler, event_from_payloads(labels, first_sequence=10)) == {"batchItemFailures": []}
    assert len(label_items(stack)) == 2  # a redelivered batch writes the same items again

    reversed_later = label_payload(paid[1], True, known + timedelta(hours=5))  # charged back after all
    assert invoke(handler, event_from_payloads([reversed_later], first_sequence=20)) == {
        "batchItemFailures": []
    }
    assert verdicts(stack) == {paid[0]["transaction_id"]: True, paid[1]["transaction_id"]: True}


def test_a_label_left_unwritten_is_retried_even_though_its_merchant_already_counted_it(handler, stack):
    paid = transactions("user-m", [20, 25])
    known = START + timedelta(days=1)
    payloads = [(contract_payload(tx), tx["user_id"], instant(tx) + 0.5) for tx in paid]
    payloads += [label_payload(paid[0], True, known)]
    event = event_from_payloads(payloads)
    labels_sequence = event["Records"][-1]["kinesis"]["sequenceNumber"]
    service = inspect.unwrap(handler).__globals__["service"]
    client = service._profiles._client
    throttled = {"left": 4}  # every attempt: the label's put is left unprocessed, its merchant's written

    def leave_the_label(params: dict[str, Any], **_: Any) -> Any:
        requests = json.loads(params["body"])["RequestItems"]
        if stack["LabelsTableName"] not in requests or not throttled["left"]:
            return None
        throttled["left"] -= 1
        rest = {table: r for table, r in requests.items() if table != stack["LabelsTableName"]}
        boto3.client("dynamodb").batch_write_item(RequestItems=rest)
        body = {"UnprocessedItems": {stack["LabelsTableName"]: requests[stack["LabelsTableName"]]}}
        return AWSResponse("https://dynamodb", 200, HTTPHeaders(), None), body

    client.meta.events.register("before-call.dynamodb.BatchWriteItem", leave_the_label)
    first = invoke(handler, event)
    assert first == {"batchItemFailures": [{"itemIdentifier": labels_sequence}]}
    counted = merchant_profiles(stack)["merch-0"].days
    assert label_items(stack) == []

    assert invoke(handler, event) == {"batchItemFailures": []}
    assert verdicts(stack) == {paid[0]["transaction_id"]: True}
    assert merchant_profiles(stack)["merch-0"].days == counted  # the merchant counted it once


def test_puts_of_several_tables_share_chunks_of_25_and_failures_name_their_owners(stack):
    client = boto3.client("dynamodb")
    writes = BatchWrites(client)
    merchants, labels = stack["MerchantProfilesTableName"], stack["LabelsTableName"]
    puts = [(merchants, f"m-{i}", {"merchant_id": {"S": f"m-{i}"}, "state": {"S": "{}"}}) for i in range(20)]
    puts += [
        (labels, f"m-{i}", {"transaction_id": {"S": f"tx-{i}"}, "label": {"S": "1#fraud"}}) for i in range(20)
    ]

    assert packed_write(client, puts, error=ProfileStoreError, sleep=lambda _: None) == set()
    assert writes.calls == [sorted([labels, merchants]), [labels]]  # 40 puts, in order: 25, then 15
    assert len(label_items(stack)) == 20

    missing = [("no-such-table", "m-1", {"k": {"S": "1"}}), (merchants, "m-2", {"merchant_id": {"S": "m-2"}})]
    with pytest.raises(ProfileStoreError) as raised:
        packed_write(client, missing, error=ProfileStoreError, sleep=lambda _: None)
    assert raised.value.unwritten == frozenset({"m-1", "m-2"})  # the chunk is refused whole
    assert (raised.value.code, raised.value.retryable) == ("ResourceNotFoundException", False)


def decided(tx: str, decided_at: datetime) -> DecisionRecord:
    return DecisionRecord(
        tx, "user-1", "merch-1", 10.0, "EUR", decided_at.isoformat(), Decision.APPROVED, 0.1, "m-1",
        Thresholds(0.5, 0.9), decided_at.isoformat(),
    )  # fmt: skip


def test_the_daily_reads_return_only_the_decisions_and_labels_asked_for(handler, stack):
    day = datetime(2026, 11, 20, tzinfo=UTC)
    store = DynamoDecisionStore(stack["DecisionsTableName"])
    written = [decided(f"tx-{h}", day + timedelta(hours=h)) for h in range(0, 72, 6)]
    store.put_many(written)

    found = store.get_many(["tx-30", "tx-24", "tx-30", "no-such-tx"])
    assert sorted(found) == [d for d in written if d.transaction_id in ("tx-24", "tx-30")]
    assert list(store.get_many([])) == []

    paid = transactions("user-n", [20, 25])
    early, late = START + timedelta(hours=1), START + timedelta(days=2)
    event = event_from_payloads([label_payload(paid[0], True, early), label_payload(paid[1], False, late)])
    assert invoke(handler, event) == {"batchItemFailures": []}
    known = DynamoLabelStore(stack["LabelsTableName"]).known_since((START + timedelta(days=1)).timestamp())
    assert [(label.transaction_id, label.is_fraud) for label in known] == [(paid[1]["transaction_id"], False)]
