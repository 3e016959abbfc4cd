"""The real Lambda handler, loaded as Lambda would load it, on moto."""

import inspect
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from fraudwatch.adapters.bundle import CARD_FILE, FEATURES_FILE, MODEL_FILE, THRESHOLDS_FILE
from fraudwatch.adapters.dynamodb import decision_of, stored_state
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.errors import BundleError, ConfigurationError
from infra.events import contract_payload, event_from_payloads, event_from_transactions, instant, label_body
from infra.invoke import Handler, LocalContext, load_handler
from tests.adapters.conftest import drain

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
EVENTS = Path(__file__).resolve().parents[2] / "events"


def transactions(
    user: str, amounts: list[float], *, start: datetime = START, prefix: str = "tx"
) -> list[dict[str, Any]]:
    return [
        {
            "transaction_id": f"{prefix}-{user}-{i}",
            "user_id": user,
            "merchant_id": f"merch-{i % 3}",
            "amount": amount,
            "currency": "USD",
            "timestamp": (start + timedelta(hours=3 * i)).isoformat(),
            "category": "grocery",
        }
        for i, amount in enumerate(amounts)
    ]


@pytest.fixture
def handler(stack, tiny_bundle, restore_environ):
    return load_handler(stack, bundle_dir=tiny_bundle)


def invoke(handler: Handler, event: dict[str, Any]) -> dict[str, Any]:
    return handler(event, LocalContext())


def decisions(stack) -> dict[str, dict[str, Any]]:
    items = boto3.client("dynamodb").scan(TableName=stack["DecisionsTableName"])["Items"]
    return {i["transaction_id"]["S"]: i for i in items}


def profiles(stack) -> dict[str, str]:
    items = boto3.client("dynamodb").scan(TableName=stack["ProfilesTableName"])["Items"]
    return {i["user_id"]["S"]: stored_state(i) for i in items}


def merchant_profiles(stack) -> dict[str, MerchantProfile]:
    items = boto3.client("dynamodb").scan(TableName=stack["MerchantProfilesTableName"])["Items"]
    return {
        i["merchant_id"]["S"]: MerchantProfile.from_json(i["merchant_id"]["S"], stored_state(i))
        for i in items
    }


def emf_blobs(stdout: str) -> list[dict[str, Any]]:
    """The CloudWatch EMF documents the handler printed (the batch's, and the cold start's)."""
    documents = (json.loads(line) for line in stdout.splitlines() if line.startswith("{"))
    return [d for d in documents if "_aws" in d]


def label_payload(
    transaction: Mapping[str, Any], is_fraud: bool, labelled_at: datetime
) -> tuple[bytes, str, float]:
    """A label as a producer puts it on the stream: partition key = merchant id."""
    body = label_body(
        transaction["transaction_id"], transaction["merchant_id"], is_fraud, labelled_at.isoformat()
    )
    return json.dumps(body).encode(), transaction["merchant_id"], labelled_at.timestamp() + 0.5


def ordinary_and_fraud() -> list[dict[str, Any]]:
    history = transactions("user-a", [30, 32, 28, 35, 31, 29, 33, 30]) + transactions("user-b", [12, 15, 11])
    fraud = transactions("user-a", [4800], start=START + timedelta(days=2), prefix="big")
    return sorted(history, key=lambda t: t["timestamp"]) + fraud


def test_every_record_gets_a_decision_and_its_user_a_profile(handler, stack):
    response = invoke(handler, event_from_transactions(ordinary_and_fraud()))
    assert response == {"batchItemFailures": []}
    written = decisions(stack)
    assert len(written) == 12
    assert written["big-user-a-0"]["decision"]["S"] == "REJECTED"
    assert written["tx-user-a-0"]["decision"]["S"] == "APPROVED"
    assert written["big-user-a-0"]["model_version"]["S"] == "tiny-test-1"
    assert decision_of(written["big-user-a-0"]).reasons  # the top reasons explain the alert
    assert json.loads(profiles(stack)["user-a"])["n"] == 9


def test_flagged_and_rejected_decisions_raise_one_alert_each(handler, stack, alert_inbox):
    invoke(handler, event_from_transactions(ordinary_and_fraud()))
    alerts = drain(alert_inbox)
    assert [m["MessageAttributes"]["alert_id"]["StringValue"] for m in alerts] == ["big-user-a-0"]
    assert json.loads(alerts[0]["Body"])["decision"] == "REJECTED"


def test_labels_in_a_batch_are_counted_in_their_merchants_profiles_once(handler, stack, capsys):
    paid = transactions("user-l", [20, 25, 30])  # merch-0, merch-1, merch-2
    known = START + timedelta(days=1)
    payloads = [(contract_payload(tx), tx["user_id"], instant(tx) + 0.5) for tx in paid]
    payloads += [label_payload(paid[0], True, known), label_payload(paid[1], False, known)]
    payloads.append(label_payload(paid[0], True, known))  # the same label twice: counted once
    event = event_from_payloads(payloads)

    assert invoke(handler, event) == {"batchItemFailures": []}
    (emitted,) = [blob for blob in emf_blobs(capsys.readouterr().out) if "Scored" in blob]
    assert (emitted["Labels"], emitted["Duplicates"], emitted["Scored"]) == ([2], [1], [3])
    assert emitted["Misrouted"] == [0]  # transactions keyed by user, labels by merchant
    day = int(known.timestamp() // 86400)
    merchants = merchant_profiles(stack)
    assert {m: p.days for m, p in merchants.items()} == {"merch-0": [[day, 1, 1]], "merch-1": [[day, 1, 0]]}
    assert sorted(decisions(stack)) == sorted(tx["transaction_id"] for tx in paid)
    assert set(profiles(stack)) == {"user-l"}

    assert invoke(handler, event) == {"batchItemFailures": []}  # a replay counts nothing again
    assert merchant_profiles(stack) == merchants


def test_records_put_with_another_partition_key_are_decided_and_counted_as_misrouted(handler, stack, capsys):
    paid = transactions("user-k", [20, 25])
    payloads = [(contract_payload(paid[0]), "user-k", instant(paid[0]) + 0.5)]
    payloads.append((contract_payload(paid[1]), paid[1]["merchant_id"], instant(paid[1]) + 0.5))  # wrong key
    label, _, arrival = label_payload(paid[0], True, START + timedelta(days=1))
    payloads.append((label, "user-k", arrival))  # a label keyed by the user: wrong too

    assert invoke(handler, event_from_payloads(payloads)) == {"batchItemFailures": []}
    (emitted,) = [blob for blob in emf_blobs(capsys.readouterr().out) if "Scored" in blob]
    assert (emitted["Misrouted"], emitted["Scored"], emitted["Labels"]) == ([2], [2], [1])
    assert sorted(decisions(stack)) == sorted(tx["transaction_id"] for tx in paid)


def test_malformed_records_are_quarantined_and_never_retried(handler, stack):
    valid = transactions("user-c", [20, 25])
    arrival = datetime.fromisoformat(valid[-1]["timestamp"]).timestamp() + 1
    event = event_from_payloads(
        [
            (json.dumps(valid[0]).encode(), "user-c", arrival),
            (b"{broken", "user-x", arrival),
            (json.dumps({**valid[1], "amount": "NaN"}).encode(), "user-c", arrival),
            (json.dumps(valid[1]).encode(), "user-c", arrival),
        ]
    )
    assert invoke(handler, event) == {"batchItemFailures": []}
    quarantined = [json.loads(m["Body"]) for m in drain(stack["QuarantineQueueUrl"])]
    assert [(q["sequence_number"], q["field"]) for q in quarantined] == [("2", "payload"), ("3", "amount")]
    assert sorted(decisions(stack)) == ["tx-user-c-0", "tx-user-c-1"]


def test_a_throttled_write_reports_exactly_the_affected_records_and_the_retry_completes(handler, stack):
    service = inspect.unwrap(handler).__globals__["service"]
    client = service._decisions._client
    throttled = {"left": 4}  # every attempt at the first chunk of 25 decisions

    def throttle(params, **kwargs):
        if stack["DecisionsTableName"] in json.loads(params["body"])["RequestItems"] and throttled["left"]:
            throttled["left"] -= 1
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
            return AWSResponse("https://dynamodb", 400, HTTPHeaders(), None), error
        return None

    client.meta.events.register("before-call.dynamodb.BatchWriteItem", throttle)
    users = [transactions(f"user-{i:02d}", [40.0 + i])[0] for i in range(40)]
    event = event_from_transactions(users)
    first = invoke(handler, event)
    failed = {f["itemIdentifier"] for f in first["batchItemFailures"]}
    assert len(failed) == 25  # the throttled chunk's records are reported, not lost
    assert len(decisions(stack)) == 15
    assert len(profiles(stack)) == 15  # a user whose decision is unwritten keeps their old profile

    assert invoke(handler, event) == {"batchItemFailures": []}
    assert len(decisions(stack)) == 40
    assert all(json.loads(state)["n"] == 1 for state in profiles(stack).values())


def test_a_replayed_batch_changes_nothing(handler, stack, alert_inbox):
    event = event_from_transactions(ordinary_and_fraud())
    invoke(handler, event)
    before = (decisions(stack), profiles(stack), len(drain(alert_inbox)))
    assert invoke(handler, event) == {"batchItemFailures": []}
    assert (decisions(stack), profiles(stack), len(drain(alert_inbox))) == (before[0], before[1], 0)


@pytest.mark.parametrize(
    ("output", "variable"),
    [("ProfilesTableName", "PROFILES_TABLE"), ("MerchantProfilesTableName", "MERCHANT_PROFILES_TABLE")],
)
def test_a_missing_setting_stops_the_cold_start_naming_it(
    stack, tiny_bundle, restore_environ, output, variable
):
    with pytest.raises(ConfigurationError, match=rf"^{variable} is not set"):
        load_handler({**stack, output: ""}, bundle_dir=tiny_bundle)


def test_a_missing_bundle_stops_the_cold_start(stack, tmp_path: Path, restore_environ):
    with pytest.raises(BundleError, match=r"missing model\.ubj"):
        load_handler(stack, bundle_dir=tmp_path)


def test_a_corrupt_bundle_stops_the_cold_start(stack, tiny_bundle, tmp_path: Path, restore_environ):
    for name in (FEATURES_FILE, THRESHOLDS_FILE, CARD_FILE):
        (tmp_path / name).write_text((tiny_bundle / name).read_text())
    (tmp_path / MODEL_FILE).write_bytes(b"not a model")
    with pytest.raises(BundleError, match="corrupt"):
        load_handler(stack, bundle_dir=tmp_path)


@pytest.mark.parametrize("name", ["ordinary", "fraud", "malformed", "mixed"])
def test_sample_events_are_decided_or_quarantined_record_by_record(handler, stack, name):
    event = json.loads((EVENTS / f"{name}.json").read_text())
    assert invoke(handler, event) == {"batchItemFailures": []}
    quarantined = len(drain(stack["QuarantineQueueUrl"]))
    assert quarantined + len(decisions(stack)) == len(event["Records"])
    assert quarantined == {"ordinary": 0, "fraud": 0, "malformed": 13, "mixed": 3}[name]


def test_fraud_sample_raises_alerts(handler, stack, alert_inbox):
    invoke(handler, json.loads((EVENTS / "fraud.json").read_text()))
    alerts = [json.loads(m["Body"]) for m in drain(alert_inbox)]
    assert alerts
    assert {a["decision"] for a in alerts} <= {"FLAGGED", "REJECTED"}
