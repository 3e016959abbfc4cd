"""The template's data resources on in-process moto: a throwaway stack for dry runs and tests.

Tables (key schemas and indexes from template.yaml), the alerts topic and the queues of the kinds the
template gives them, a stream, and an SQS inbox subscribed to the topic; named by a prefix, so several
can live side by side (a clean run beside a faulty one). Nothing here reaches a network.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

from infra.messaging import create_queue, create_topic, subscribe_queue
from infra.template import load_template, resources_of_type

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def build_stack(prefix: str) -> dict[str, str]:
    """The template's tables, topic, queues and stream on in-process moto, as stack outputs named `prefix`-*.

    An SQS inbox subscribed to the topic (raw delivery) is added as `AlertInboxUrl`.
    """
    dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    tables = {}
    for logical_id, resource in resources_of_type(load_template(), "AWS::DynamoDB::Table").items():
        props = resource["Properties"]
        args: dict[str, Any] = {
            "TableName": f"{prefix}-{logical_id}",
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props["BillingMode"],
        }
        if "GlobalSecondaryIndexes" in props:
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        dynamodb.create_table(**args)
        tables[logical_id] = args["TableName"]
    sns = boto3.client("sns")
    topic_arn = create_topic(sns, "AlertsTopic", f"{prefix}-AlertsTopic")
    queues = {
        q: create_queue(sqs, q, f"{prefix}-{q}")
        for q in resources_of_type(load_template(), "AWS::SQS::Queue")
    }
    queues["AlertInbox"] = subscribe_queue(sns, sqs, topic_arn, f"{prefix}-AlertInbox")
    stream = f"{prefix}-transactions"
    boto3.client("kinesis").create_stream(StreamName=stream, ShardCount=1)
    buckets = {b: bucket_name(prefix, b) for b in resources_of_type(load_template(), "AWS::S3::Bucket")}
    for bucket in buckets.values():
        boto3.client("s3").create_bucket(Bucket=bucket)
    return {
        "StreamName": stream,
        **{f"{logical_id}Name": name for logical_id, name in {**tables, **buckets}.items()},  # as outputs do
        "AlertsTopicArn": topic_arn,
        "QuarantineQueueUrl": queues["QuarantineQueue"],
        "OnFailureQueueUrl": queues["OnFailureQueue"],
        "AlertInboxUrl": queues["AlertInbox"],
    }


def bucket_name(prefix: str, logical_id: str) -> str:
    """A valid bucket name for `prefix`-`logical_id`: lower case, at most 63 characters (a digest keeps
    long ones apart)."""
    name = f"{prefix}-{logical_id}".lower().replace("_", "-")
    if len(name) <= 63:
        return name
    return f"{name[:54]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


@contextmanager
def in_process_aws() -> Iterator[None]:
    """Moto in this process, with fake credentials and no endpoint: nothing can reach a real account."""
    from moto import mock_aws

    saved = dict(os.environ)
    os.environ.update(FAKE_CREDENTIALS)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)
    try:
        with mock_aws():
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
