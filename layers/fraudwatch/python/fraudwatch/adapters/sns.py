"""Alerts on SNS: one message per FLAGGED or REJECTED decision, ten to a PublishBatch call.

On a FIFO topic (its ARN ends in `.fifo`) each alert carries a deduplication id made from its alert id
and a message group made from its user: SNS drops a second publish of the same alert within five
minutes (a batch redelivered after a crash, a lost response, a replay), keeps each user's alerts in
order, and delivers different users' in parallel. A standard topic refuses both parameters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.adapters.aws import FIFO_SUFFIX, Failure, failed_entries, fifo_id, given_up, retry_batch
from fraudwatch.domain.decision import DecisionRecord
from fraudwatch.errors import AlertPublishError

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import PublishBatchRequestEntryTypeDef as Entry

PUBLISH_CHUNK = 10


class SnsAlertPublisher:
    """Publishes decisions as alerts; the alert id (a message attribute) is the transaction id."""

    def __init__(
        self,
        topic_arn: str,
        client: SNSClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.topic_arn = topic_arn
        self.topic_name = topic_arn.rsplit(":", 1)[-1]
        self.fifo = topic_arn.endswith(FIFO_SUFFIX)
        self._client = client or boto3.client("sns")
        self._sleep = sleep

    def publish_many(self, decisions: Sequence[DecisionRecord]) -> set[str]:
        """Publish one alert per decision; raises AlertPublishError naming the transaction ids not published.

        Entries failed transiently (a throttled or failed call, an entry failed by SNS's fault) are
        published again with backoff; a permanent failure (the topic missing, access or its KMS key
        denied, an entry refused) is not.
        """
        failed: list[tuple[str, Failure]] = []
        for start in range(0, len(decisions), PUBLISH_CHUNK):
            chunk = decisions[start : start + PUBLISH_CHUNK]
            entries = [self._entry(str(i), d) for i, d in enumerate(chunk)]
            for entry, failure in retry_batch(self._publish, entries, self._sleep):
                failed.append((chunk[int(entry["Id"])].transaction_id, failure))
        if failed:
            raise given_up(AlertPublishError, failed, operation="PublishBatch", resource=self.topic_name)
        return set()

    def _publish(self, entries: list[Entry]) -> list[tuple[Entry, Failure]]:
        """One PublishBatch call; the entries it failed, with why."""
        try:
            response = self._client.publish_batch(TopicArn=self.topic_arn, PublishBatchRequestEntries=entries)
        except (ClientError, BotoCoreError) as exc:
            failure = Failure.of_exception(exc)
            return [(entry, failure) for entry in entries]
        return failed_entries(entries, response)

    def _entry(self, entry_id: str, decision: DecisionRecord) -> Entry:
        entry: Entry = {
            "Id": entry_id,
            "Subject": f"fraudwatch {decision.decision.value}",
            "Message": json.dumps(decision.to_dict()),
            "MessageAttributes": {
                "alert_id": {"DataType": "String", "StringValue": decision.transaction_id},
                "decision": {"DataType": "String", "StringValue": decision.decision.value},
            },
        }
        if self.fifo:
            entry["MessageDeduplicationId"] = fifo_id(decision.transaction_id)
            entry["MessageGroupId"] = fifo_id(decision.user_id)
        return entry
