"""A local SQS event-source runner: Lambda's SQS mapping, for endpoints where it cannot run (moto).

It does what Lambda's SQS poller does for the cases function: long-polls the queue (ReceiveMessage, ten
at most, every attribute), calls the handler with a Lambda-shaped SQS event, and with
ReportBatchItemFailures deletes every message but those the response lists; an exception fails the
whole batch. What is not deleted comes back after the queue's visibility timeout, and after the
queue's maxReceiveCount goes to its dead-letter queue, as on AWS (SQS itself does that part).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from infra.invoke import LocalContext

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]
WAIT_S = 1
"""Long polling: short, so that `stop` is heard within a second."""


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One received message as Lambda hands it over (the attributes' names in Lambda's camel case)."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324 - SQS's own checksum
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class QueueRunner:
    """Polls one queue and hands its messages to a handler, as the template's SQS event would."""

    def __init__(self, sqs: Any, queue_url: str, handler: Handler, function_name: str) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.handler = handler
        self.function_name = function_name
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.region = self.queue_arn.split(":")[3]
        self.delivered = 0

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set."""
        while not stop.is_set():
            self.poll_once()

    def poll_once(self) -> int:
        """One ReceiveMessage and, if it got any, one invocation; the messages handled successfully."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=WAIT_S,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        event = {"Records": [sqs_record(m, self.queue_arn, self.region) for m in messages]}
        try:
            response = self.handler(event, LocalContext(function_name=self.function_name, timeout_ms=30_000))
            failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        except Exception:
            log.exception(
                "%s failed a batch of %d: it comes back after the visibility timeout",
                self.function_name,
                len(messages),
            )
            return 0
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        self.delivered += len(done)
        return len(done)
