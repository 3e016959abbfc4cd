"""The quarantine on SQS: each malformed record with its original payload and the reason.

Each message names its record (shard and sequence number) in a `record_id` attribute, so that a
consumer can tell a record kept twice at any distance. On a FIFO queue (its URL ends in `.fifo`) the
record's id is also its deduplication id, and its shard its message group: SQS drops the same record
sent again within five minutes (a redelivered batch), and keeps each shard's records in order. A
standard queue refuses both parameters.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.adapters.aws import FIFO_SUFFIX, Failure, failed_entries, fifo_id, given_up, retry_batch
from fraudwatch.domain.records import QuarantinedRecord, StreamRecord
from fraudwatch.errors import QuarantineError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef as Entry

SEND_CHUNK = 10
MAX_KEPT_PAYLOAD = 64 * 1024
"""Payload bytes kept per message; Kinesis records (up to 1 MB) can exceed an SQS message once encoded."""


class SqsQuarantine:
    """Keeps malformed records on a queue, ten to a SendMessageBatch call."""

    def __init__(
        self,
        queue_url: str,
        client: SQSClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.queue_url = queue_url
        self.queue_name = queue_url.rstrip("/").rsplit("/", 1)[-1]
        self.fifo = queue_url.endswith(FIFO_SUFFIX)
        self._client = client or boto3.client("sqs")
        self._sleep = sleep

    def put_many(self, items: Sequence[QuarantinedRecord]) -> set[str]:
        """Send each record; raises QuarantineError naming the sequence numbers of those not sent.

        Entries failed transiently (a throttled or failed call, an entry failed by SQS's fault) are sent
        again with backoff; a permanent failure (the queue missing, access or its KMS key denied, an
        entry refused) is not.
        """
        failed: list[tuple[str, Failure]] = []
        for start in range(0, len(items), SEND_CHUNK):
            chunk = items[start : start + SEND_CHUNK]
            entries = [self._entry(str(i), item) for i, item in enumerate(chunk)]
            for entry, failure in retry_batch(self._send, entries, self._sleep):
                failed.append((chunk[int(entry["Id"])].record.sequence_number, failure))
        if failed:
            raise given_up(QuarantineError, failed, operation="SendMessageBatch", resource=self.queue_name)
        return set()

    def _send(self, entries: list[Entry]) -> list[tuple[Entry, Failure]]:
        """One SendMessageBatch call; the entries it failed, with why."""
        try:
            response = self._client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            failure = Failure.of_exception(exc)
            return [(entry, failure) for entry in entries]
        return failed_entries(entries, response)

    def _entry(self, entry_id: str, item: QuarantinedRecord) -> Entry:
        record_id = stream_record_id(item.record)
        entry: Entry = {
            "Id": entry_id,
            "MessageBody": json.dumps(quarantine_body(item)),
            "MessageAttributes": {
                "field": {"DataType": "String", "StringValue": item.field},
                "record_id": {"DataType": "String", "StringValue": record_id},
            },
        }
        if self.fifo:
            entry["MessageDeduplicationId"] = fifo_id(record_id)
            entry["MessageGroupId"] = item.record.shard_id
        return entry


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


def stream_record_id(record: StreamRecord) -> str:
    """A record's id on its stream, as Lambda's event ids spell it: shard and sequence number."""
    return f"{record.shard_id}:{record.sequence_number}"
