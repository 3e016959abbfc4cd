"""The inline API's real handler on the embedded stack: decisions by HTTP API event, and the stream and
the API scoring the same users at once without losing an update."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from fraudwatch.adapters.dynamodb import DynamoProfileStore
from fraudwatch.domain.features import apply
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.transaction import parse_transaction
from infra.events import event_from_payloads
from infra.http_event import http_api_event
from infra.invoke import LocalContext
from tests.e2e.conftest import Embedded

pytestmark = pytest.mark.e2e
JSON = {"content-type": "application/json"}


def payment(tx_id: str, user: str, amount: float, seconds_ago: float) -> dict[str, Any]:
    return {
        "transaction_id": tx_id,
        "user_id": user,
        "merchant_id": f"merch-{int(amount) % 7}",
        "amount": amount,
        "currency": "EUR",
        "timestamp": datetime.fromtimestamp(time.time() - seconds_ago, UTC).isoformat(),
        "category": "travel",
    }


def post(embedded: Embedded, body: dict[str, Any]) -> dict[str, Any]:
    event = http_api_event("POST", "/v1/transactions", headers=JSON, body=json.dumps(body).encode())
    return embedded.api_handler(event, LocalContext(function_name="ScoringApiFunction"))


def get(embedded: Embedded, path: str, query: str = "") -> dict[str, Any]:
    event = http_api_event("GET", path, query=query)
    return embedded.api_handler(event, LocalContext(function_name="ScoringApiFunction"))


def test_a_payment_posted_twice_is_decided_once_and_found_by_id_and_by_user(embedded: Embedded):
    user = f"user-api-{uuid.uuid4().hex[:8]}"
    body = payment(f"tx-{uuid.uuid4().hex[:8]}", user, 42.5, seconds_ago=60)

    first, again = post(embedded, body), post(embedded, body)

    assert first["statusCode"] == again["statusCode"] == 200
    assert json.loads(first["body"]) == json.loads(again["body"])
    by_id = get(embedded, f"/v1/decisions/{body['transaction_id']}")
    assert json.loads(by_id["body"]) == json.loads(first["body"])
    listed = json.loads(get(embedded, f"/v1/users/{user}/decisions")["body"])
    assert [d["transaction_id"] for d in listed["decisions"]] == [body["transaction_id"]]
    store = DynamoProfileStore(
        embedded.outputs["ProfilesTableName"],
        embedded.outputs["MerchantProfilesTableName"],
        embedded.client("dynamodb"),
    )
    assert store.get_many([user]).users[user].count == 1


def test_a_transaction_id_decided_for_another_user_is_refused_and_its_decision_kept(embedded: Embedded):
    run = uuid.uuid4().hex[:8]
    tx_id, first_user, second_user = f"tx-taken-{run}", f"user-a-{run}", f"user-b-{run}"

    first = post(embedded, payment(tx_id, first_user, 42.5, seconds_ago=60))
    other = post(embedded, payment(tx_id, second_user, 5000.0, seconds_ago=30))

    assert first["statusCode"] == 200
    assert other["statusCode"] == 409
    assert json.loads(other["body"])["field"] == "transaction_id"
    assert json.loads(get(embedded, f"/v1/decisions/{tx_id}")["body"]) == json.loads(first["body"])
    store = DynamoProfileStore(
        embedded.outputs["ProfilesTableName"],
        embedded.outputs["MerchantProfilesTableName"],
        embedded.client("dynamodb"),
    )
    assert second_user not in store.get_many([second_user]).users  # nothing counted for the other payment


def test_a_payment_posted_again_long_after_is_still_the_same_decision_counted_once(embedded: Embedded):
    run = uuid.uuid4().hex[:8]
    user = f"user-late-{run}"
    body = payment(f"tx-late-{run}-0", user, 42.5, seconds_ago=3000)
    first = post(embedded, body)
    for i in range(1, 70):  # more than the 64 transaction ids a profile remembers
        assert post(embedded, payment(f"tx-late-{run}-{i}", user, 10.0 + i, 3000 - i))["statusCode"] == 200

    again = post(embedded, body)

    assert json.loads(again["body"]) == json.loads(first["body"])
    store = DynamoProfileStore(
        embedded.outputs["ProfilesTableName"],
        embedded.outputs["MerchantProfilesTableName"],
        embedded.client("dynamodb"),
    )
    assert store.get_many([user]).users[user].count == 70


def test_stream_batches_and_api_calls_for_the_same_users_at_once_lose_no_update(embedded: Embedded):
    run = uuid.uuid4().hex[:8]
    users = [f"user-race-{run}-{i}" for i in range(3)]
    by_api = [payment(f"tx-{run}-api-{i}", users[i % 3], 10.0 + i, 3000 - i) for i in range(24)]
    by_stream = [payment(f"tx-{run}-st-{i}", users[i % 3], 500.0 + i, 2000 - i) for i in range(30)]
    both = by_api[:3]  # posted to the API and put on the stream: counted once
    stream_payloads = [json.dumps(tx).encode() for tx in by_stream + both]
    batches = [stream_payloads[i : i + 11] for i in range(0, len(stream_payloads), 11)]

    def stream() -> int:
        """Each batch through the stream's handler, retried from its first failed record as the event
        source mapping does; returns the retries (a batch that lost every race with the API)."""
        retries = 0
        for n, batch in enumerate(batches):
            event = event_from_payloads(
                [(data, json.loads(data)["user_id"], time.time()) for data in batch],
                first_sequence=1_000_000 + 100 * n,
            )
            for _ in range(50):
                try:
                    failures = embedded.handler(event, LocalContext())["batchItemFailures"]
                except BatchProcessingError:  # every record failed: a function error, the batch retried
                    retries += 1
                    continue
                if not failures:
                    break
                retries += 1
                first = int(failures[0]["itemIdentifier"])
                event = {
                    "Records": [r for r in event["Records"] if int(r["kinesis"]["sequenceNumber"]) >= first]
                }
            else:
                pytest.fail(f"batch {n} still failing after 50 deliveries")
        return retries

    with ThreadPoolExecutor(max_workers=4) as pool:
        streaming = pool.submit(stream)
        answers = list(pool.map(lambda body: post(embedded, body), by_api))
        streaming.result()

    assert [a["statusCode"] for a in answers] == [200] * len(by_api)
    store = DynamoProfileStore(
        embedded.outputs["ProfilesTableName"],
        embedded.outputs["MerchantProfilesTableName"],
        embedded.client("dynamodb"),
    )
    stored = store.get_many(users).users
    sent = {tx["transaction_id"]: tx for tx in by_api + by_stream}
    for user in users:
        mine = {tx_id for tx_id, tx in sent.items() if tx["user_id"] == user}
        profile = stored[user]
        assert profile.count == len(mine)  # every payment counted, each once
        assert set(profile.applied_ids) == mine
        assert profile == sequential_replay(user, [sent[tx_id] for tx_id in profile.applied_ids], profile)
    decisions = embedded.client("dynamodb")
    for tx_id in sent:
        item = decisions.get_item(
            TableName=embedded.outputs["DecisionsTableName"], Key={"transaction_id": {"S": tx_id}}
        )
        assert "Item" in item, tx_id


def sequential_replay(user: str, in_order: list[dict[str, Any]], stored: UserProfile) -> UserProfile:
    """The profile one writer alone would have built, applying the payments in this order."""
    replayed = UserProfile(user)
    for body in in_order:
        tx = parse_transaction(json.dumps(body).encode())
        apply(replayed, tx)
        replayed.mark_applied(tx.transaction_id, None, None)
    replayed.checkpoints = stored.checkpoints  # the stream's shard positions: not part of the replay
    return replayed
