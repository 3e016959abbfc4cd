"""SnapStart on the inline API: the restore hook gives a resumed environment new clients around the same
model, and it still decides."""

import inspect
import json
from datetime import UTC, datetime

import boto3
import snapshot_restore_py

from fraudwatch.adapters.registry import RegistryModels
from infra.events import event_from_transactions
from infra.http_event import http_api_event
from infra.invoke import LocalContext, load_handler
from infra.template import load_template


def test_after_a_restore_the_api_has_new_aws_clients_the_same_model_and_still_decides(
    stack, tiny_bundle, restore_environ
):
    handler = load_handler(stack, bundle_dir=tiny_bundle, function="ScoringApiFunction")
    wired = inspect.unwrap(handler).__globals__
    before = wired["scoring"]
    hooks = [hook for hook, _, _ in snapshot_restore_py.get_after_restore() if hook is wired["after_restore"]]
    assert len(hooks) == 1  # registered by the handler's module, as SnapStart runs it after a restore

    hooks[0]()

    after = wired["scoring"]
    assert after is not before
    assert after.service._profiles._client is not before.service._profiles._client
    assert after.service._alerts._client is not before.service._alerts._client
    # the snapshot's models, not loaded again, read through the new clients
    assert after.service.models.current().champion is before.service.models.current().champion
    restored = after.service.models
    assert isinstance(restored, RegistryModels)
    assert restored._registry._dynamodb is after.service._profiles._client
    body = {
        "transaction_id": "tx-restored-1",
        "user_id": "user-restored",
        "merchant_id": "merch-1",
        "amount": 12.5,
        "currency": "USD",
        "timestamp": datetime.now(UTC).isoformat(),
        "category": "grocery",
    }
    event = http_api_event(
        "POST",
        "/v1/transactions",
        headers={"content-type": "application/json"},
        body=json.dumps(body).encode(),
    )
    response = handler(event, LocalContext(function_name="ScoringApiFunction"))
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["transaction_id"] == "tx-restored-1"


def test_the_api_function_is_snapstarted_on_a_published_alias():
    props = load_template()["Resources"]["ScoringApiFunction"]["Properties"]
    assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert props["AutoPublishAlias"] == "live"


def test_after_a_restore_the_stream_function_has_new_aws_clients_the_same_model_and_still_decides(
    stack, tiny_bundle, restore_environ
):
    handler = load_handler(stack, bundle_dir=tiny_bundle, function="ScoringFunction")
    wired = inspect.unwrap(handler).__globals__
    before = wired["processor"].service
    hooks = [hook for hook, _, _ in snapshot_restore_py.get_after_restore() if hook is wired["after_restore"]]
    assert len(hooks) == 1

    hooks[0]()

    after = wired["processor"].service
    assert after is not before
    assert after is wired["service"]  # the one the batch's metrics name the model version of
    assert after._profiles._client is not before._profiles._client
    assert after._quarantine._client is not before._quarantine._client
    # the snapshot's models, not loaded again, read through the new clients
    assert after.models.current().champion is before.models.current().champion
    restored = after.models
    assert isinstance(restored, RegistryModels)
    assert restored._registry._dynamodb is after._profiles._client
    payload = {
        "transaction_id": "tx-restored-stream-1",
        "user_id": "user-restored",
        "merchant_id": "merch-1",
        "amount": 12.5,
        "currency": "USD",
        "timestamp": datetime.now(UTC).isoformat(),
        "category": "grocery",
    }
    response = handler(event_from_transactions([payload]), LocalContext())
    assert response == {"batchItemFailures": []}
    item = boto3.client("dynamodb").get_item(
        TableName=stack["DecisionsTableName"], Key={"transaction_id": {"S": "tx-restored-stream-1"}}
    )
    assert "Item" in item


def test_the_stream_function_is_snapstarted_and_its_mapping_invokes_the_alias():
    props = load_template()["Resources"]["ScoringFunction"]["Properties"]
    assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert props["AutoPublishAlias"] == "live"
    assert props["Events"]["TransactionsStream"]["Type"] == "Kinesis"  # SAM points it at the alias
