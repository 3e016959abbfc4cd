"""The quarantine on SQS: each malformed record with its original payload and the reason."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.domain.records import QuarantinedRecord

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SEND_CHUNK = 10
MAX_KEPT_PAYLOAD = 64 * 1024
"""Payload bytes kept per message; Kinesis records (up to 1 MB) can exceed an SQS message once encoded."""


class SqsQuarantine:
    """Keeps malformed records on a queue, ten to a SendMessageBatch call."""

    def __init__(self, queue_url: str, client: SQSClient | None = None):
        self.queue_url = queue_url
        self._client = client or boto3.client("sqs")

    def put_many(self, items: Sequence[QuarantinedRecord]) -> set[str]:
        """Send each record; return the sequence numbers of those not sent."""
        unsent: set[str] = set()
        for start in range(0, len(items), SEND_CHUNK):
            chunk = items[start : start + SEND_CHUNK]
            entries: list[Any] = [_entry(str(i), item) for i, item in enumerate(chunk)]
            try:
                response = self._client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (ClientError, BotoCoreError):
                unsent.update(item.record.sequence_number for item in chunk)
                continue
            unsent.update(chunk[int(f["Id"])].record.sequence_number for f in response.get("Failed", []))
        return unsent


def quarantine_body(item: QuarantinedRecord) -> dict[str, Any]:
    """The message kept for one malformed record: the reason, where it came from, the payload."""
    record = item.record
    return {
        "field": item.field,
        "reason": item.reason,
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "arrival_time": datetime.fromtimestamp(record.arrival_epoch, UTC).isoformat(),
        "payload_bytes": len(record.data),
        "payload_truncated": len(record.data) > MAX_KEPT_PAYLOAD,
        "payload_base64": base64.b64encode(record.data[:MAX_KEPT_PAYLOAD]).decode("ascii"),
    }


def _entry(entry_id: str, item: QuarantinedRecord) -> dict[str, Any]:
    return {
        "Id": entry_id,
        "MessageBody": json.dumps(quarantine_body(item)),
        "MessageAttributes": {"field": {"DataType": "String", "StringValue": item.field}},
    }
