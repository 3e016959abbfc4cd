"""Moto-backed resources built from template.yaml's own definitions, so tests and template cannot drift."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.messaging import create_queue, create_topic, subscribe_queue
from infra.template import TEMPLATE, load_template

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Moto in process, with fake credentials so nothing can reach a real account."""
    with mocked_aws(monkeypatch):
        yield


@contextmanager
def mocked_aws(patch: pytest.MonkeyPatch) -> Iterator[None]:
    """Moto in process with fake credentials and no endpoint or profile that could reach a real account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        patch.setenv(name, value)
    patch.delenv("AWS_ENDPOINT_URL", raising=False)
    patch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def template_resources(kind: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    resources = load_template(TEMPLATE)["Resources"]
    return {name: r.get("Properties", {}) for name, r in resources.items() if r["Type"] == kind}


def create_table(logical_id: str) -> str:
    """Create a table with the template's key schema, indexes and billing mode; return its name."""
    props = template_resources("AWS::DynamoDB::Table")[logical_id]
    name = f"test-{logical_id}"
    args: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props["BillingMode"],
    }
    if "GlobalSecondaryIndexes" in props:
        args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    boto3.client("dynamodb").create_table(**args)
    return name


def _stream(name: str) -> str:
    """The transactions stream (the API function puts review verdicts on it as labels)."""
    boto3.client("kinesis").create_stream(StreamName=name, ShardCount=1)
    return name


def create_bucket(logical_id: str, name: str) -> str:
    """Create a bucket of the template's (moto does not enforce its encryption); return its name."""
    assert logical_id in template_resources("AWS::S3::Bucket")
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def stack(aws: None) -> dict[str, str]:
    """The template's tables, topic and queues on moto, named as the stack's outputs name them."""
    sqs = boto3.client("sqs")
    topic_arn = create_topic(boto3.client("sns"), "AlertsTopic", "test-AlertsTopic")
    queues = {q: create_queue(sqs, q, f"test-{q}") for q in template_resources("AWS::SQS::Queue")}
    return {
        "ProfilesTableName": create_table("ProfilesTable"),
        "MerchantProfilesTableName": create_table("MerchantProfilesTable"),
        "DecisionsTableName": create_table("DecisionsTable"),
        "ListsTableName": create_table("ListsTable"),
        "RulesTableName": create_table("RulesTable"),
        "CasesTableName": create_table("CasesTable"),
        "StreamName": _stream("test-TransactionsStream"),
        "ModelsTableName": create_table("ModelsTable"),
        "ModelsBucketName": create_bucket("ModelsBucket", "test-models"),
        "DriftTableName": create_table("DriftTable"),
        "LabelsTableName": create_table("LabelsTable"),
        "AlertsTopicArn": topic_arn,
        "QuarantineQueueUrl": queues["QuarantineQueue"],
        "OnFailureQueueUrl": queues["OnFailureQueue"],
    }


@pytest.fixture
def alert_inbox(stack: dict[str, str]) -> str:
    """An SQS queue subscribed to the alerts topic (raw delivery), as an operator would watch it."""
    return subscribe_queue(
        boto3.client("sns"), boto3.client("sqs"), stack["AlertsTopicArn"], "test-alert-inbox"
    )


def drain(queue_url: str) -> list[dict[str, Any]]:
    """Every message on a queue, with its attributes."""
    sqs = boto3.client("sqs")
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", []):
        messages.extend(dict(m) for m in batch)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return messages


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """Loading the handler sets the function's environment in this process; undo it afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
