"""Alerts on SNS: one message per FLAGGED or REJECTED decision, ten to a PublishBatch call."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.domain.decision import DecisionRecord

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

PUBLISH_CHUNK = 10


class SnsAlertPublisher:
    """Publishes decisions as alerts; the alert id (a message attribute) is the transaction id."""

    def __init__(self, topic_arn: str, client: SNSClient | None = None):
        self.topic_arn = topic_arn
        self._client = client or boto3.client("sns")

    def publish_many(self, decisions: Sequence[DecisionRecord]) -> set[str]:
        """Publish one alert per decision; return the transaction ids not published."""
        unpublished: set[str] = set()
        for start in range(0, len(decisions), PUBLISH_CHUNK):
            chunk = decisions[start : start + PUBLISH_CHUNK]
            entries: list[Any] = [_entry(str(i), d) for i, d in enumerate(chunk)]
            try:
                response = self._client.publish_batch(
                    TopicArn=self.topic_arn, PublishBatchRequestEntries=entries
                )
            except (ClientError, BotoCoreError):
                unpublished.update(d.transaction_id for d in chunk)
                continue
            unpublished.update(
                chunk[int(failure["Id"])].transaction_id for failure in response.get("Failed", [])
            )
        return unpublished


def _entry(entry_id: str, decision: DecisionRecord) -> dict[str, Any]:
    return {
        "Id": entry_id,
        "Subject": f"fraudwatch {decision.decision.value}",
        "Message": json.dumps(decision.to_dict()),
        "MessageAttributes": {
            "alert_id": {"DataType": "String", "StringValue": decision.transaction_id},
            "decision": {"DataType": "String", "StringValue": decision.decision.value},
        },
    }
