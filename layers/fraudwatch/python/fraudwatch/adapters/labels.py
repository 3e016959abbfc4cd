"""Labels in DynamoDB (LabelsTable): every verdict the stream brought, for the matured metrics to read.

Key: `transaction_id` and `label`, the instant it became known and the verdict
(`<milliseconds since the epoch, 14 digits>#fraud|genuine`). So the same label delivered or put again
writes the same item (no count changes), and a changed verdict is an item of its own, the latest of a
transaction's items being its verdict (domain/matured.py, `latest_verdicts`), in whatever order they
were written: no conditional write is needed, which lets the scoring function write labels in the same
BatchWriteItem calls as the merchant profiles they update (adapters/dynamodb.py), at no extra call.
Items expire 90 days after the label became known, as decisions do after their decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.adapters.aws import call_failed
from fraudwatch.domain.label import Label
from fraudwatch.domain.matured import StoredLabel
from fraudwatch.errors import AwsCallError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LABEL_TTL_SECONDS = 90 * 86400

Item = dict[str, Any]


class LabelStoreError(AwsCallError):
    """The labels table could not be read."""


def label_key(label: Label) -> str:
    """The item's sort key: when the label became known, then its verdict."""
    return f"{round(label.epoch * 1000):014d}#{'fraud' if label.is_fraud else 'genuine'}"


def label_item(label: Label) -> Item:
    """A label as LabelsTable stores it (no amount, no card data: ids, the verdict and its time)."""
    return {
        "transaction_id": {"S": label.transaction_id},
        "label": {"S": label_key(label)},
        "merchant_id": {"S": label.merchant_id},
        "is_fraud": {"BOOL": label.is_fraud},
        "labelled_at": {"S": label.labelled_at},
        "known_at": {"N": repr(label.epoch)},
        "expires_at": {"N": str(int(label.epoch) + LABEL_TTL_SECONDS)},
    }


class DynamoLabelStore:
    """Reads of LabelsTable for the daily matured metrics (the scoring function writes it)."""

    def __init__(self, table: str, client: DynamoDBClient | None = None) -> None:
        self.table = table
        self._client = client or boto3.client("dynamodb")

    def known_since(self, since: float) -> Iterator[StoredLabel]:
        """Every label known at or after `since` (epoch seconds), page by page; raises LabelStoreError.

        A Scan with a filter: DynamoDB reads (and bills) the whole table and returns the labels known
        since then. A daily job's read: labels of 90 days at most, about 200 bytes each (a million
        labels, about 200 MB: some 25,000 read units with eventually consistent reads, under a cent).
        """
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "known_at >= :since",
            "ProjectionExpression": "transaction_id, is_fraud, known_at",
            "ExpressionAttributeValues": {":since": {"N": repr(float(since))}},
        }
        while True:
            page = self._call(lambda: self._client.scan(**kwargs))
            for item in page.get("Items", []):
                yield StoredLabel(
                    item["transaction_id"]["S"],
                    item["is_fraud"]["BOOL"],
                    float(Decimal(item["known_at"]["N"])),
                )
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _call[T](self, call: Callable[[], T]) -> T:
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            raise call_failed(LabelStoreError, exc, operation="Scan", resource=self.table) from exc
