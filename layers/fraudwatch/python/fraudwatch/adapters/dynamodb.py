"""DynamoDB stores of profiles and decisions, with as few calls as DynamoDB allows.

Reads are BatchGetItem (100 keys a call), writes BatchWriteItem (25 items a call); what DynamoDB
leaves unprocessed is retried with backoff a few times, then reported back as unwritten.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.domain.decision import DecisionRecord
from fraudwatch.domain.profile import UserProfile
from fraudwatch.errors import ProfileStoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

READ_CHUNK = 100
WRITE_CHUNK = 25
ATTEMPTS = 4
DECISION_TTL_DAYS = 90

Item = dict[str, Any]


class DynamoProfileStore:
    """Profiles keyed by user_id; the state is one compact JSON attribute."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.table_name = table_name
        self._client = client or boto3.client("dynamodb")
        self._sleep = sleep

    def get_many(self, user_ids: Iterable[str]) -> dict[str, UserProfile]:
        """The stored profiles of these users; raises ProfileStoreError when any read cannot be done."""
        wanted = sorted(set(user_ids))
        found: dict[str, UserProfile] = {}
        for start in range(0, len(wanted), READ_CHUNK):
            keys = [{"user_id": {"S": user_id}} for user_id in wanted[start : start + READ_CHUNK]]
            for item in self._batch_get(keys):
                user_id = item["user_id"]["S"]
                found[user_id] = UserProfile.from_json(user_id, item["state"]["S"])
        return found

    def put_many(self, profiles: Sequence[UserProfile]) -> set[str]:
        """Write profiles; return the user ids left unwritten."""
        now = datetime.now(UTC).isoformat()
        items = {
            p.user_id: {"user_id": {"S": p.user_id}, "state": {"S": p.to_json()}, "updated_at": {"S": now}}
            for p in profiles
        }
        return batch_write(self._client, self.table_name, items, key="user_id", sleep=self._sleep)

    def _batch_get(self, keys: list[Item]) -> list[Item]:
        request: dict[str, Any] = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
        items: list[Item] = []
        for attempt in range(ATTEMPTS):
            try:
                response = self._client.batch_get_item(RequestItems=request)
            except (ClientError, BotoCoreError) as exc:
                raise ProfileStoreError(
                    f"reading profiles from {self.table_name} failed: {_code(exc)}"
                ) from exc
            items.extend(response.get("Responses", {}).get(self.table_name, []))
            request = dict(response.get("UnprocessedKeys") or {})
            if not request:
                return items
            self._sleep(_backoff(attempt))
        raise ProfileStoreError(f"{self.table_name} left {len(request[self.table_name]['Keys'])} keys unread")


class DynamoDecisionStore:
    """Decisions keyed by transaction_id, queryable by user over time, expiring after a TTL."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        ttl_days: int = DECISION_TTL_DAYS,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.table_name = table_name
        self._client = client or boto3.client("dynamodb")
        self._ttl_seconds = ttl_days * 86400
        self._sleep = sleep

    def put_many(self, decisions: Sequence[DecisionRecord]) -> set[str]:
        """Write decisions; return the transaction ids left unwritten."""
        items = {d.transaction_id: self._item(d) for d in decisions}
        return batch_write(self._client, self.table_name, items, key="transaction_id", sleep=self._sleep)

    def _item(self, d: DecisionRecord) -> Item:
        decided = datetime.fromisoformat(d.decided_at).timestamp()
        return {
            "transaction_id": {"S": d.transaction_id},
            "user_id": {"S": d.user_id},
            "merchant_id": {"S": d.merchant_id},
            "amount": {"N": repr(d.amount)},
            "currency": {"S": d.currency},
            "transaction_time": {"S": d.transaction_time},
            "decision": {"S": d.decision.value},
            "score": {"N": repr(d.score)},
            "model_version": {"S": d.model_version},
            "flag_threshold": {"N": repr(d.thresholds.flag)},
            "reject_threshold": {"N": repr(d.thresholds.reject)},
            "reasons": {"S": json.dumps([r._asdict() for r in d.reasons])},
            "decided_at": {"S": d.decided_at},
            "expires_at": {"N": str(int(decided) + self._ttl_seconds)},
        }


def batch_write(
    client: DynamoDBClient,
    table: str,
    items: dict[str, Item],
    *,
    key: str,
    sleep: Callable[[float], None] = time.sleep,
) -> set[str]:
    """BatchWriteItem in chunks of 25, retrying what is unprocessed; return the keys left unwritten.

    A failed call (throttling after botocore's own retries, a 5xx, a timeout) is retried like an
    unprocessed chunk; whatever is still unwritten is returned, never raised, so that the caller can
    fail exactly those records.
    """
    unwritten: set[str] = set()
    keys = list(items)
    for start in range(0, len(keys), WRITE_CHUNK):
        chunk: list[Any] = [{"PutRequest": {"Item": items[k]}} for k in keys[start : start + WRITE_CHUNK]]
        for attempt in range(ATTEMPTS):
            try:
                response = client.batch_write_item(RequestItems={table: chunk})
            except (ClientError, BotoCoreError):
                pass  # the whole chunk is retried, then reported unwritten
            else:
                chunk = list((response.get("UnprocessedItems") or {}).get(table, []))
            if not chunk:
                break
            if attempt < ATTEMPTS - 1:
                sleep(_backoff(attempt))
        unwritten.update(request["PutRequest"]["Item"][key]["S"] for request in chunk)
    return unwritten


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: 50 ms, 100 ms, 200 ms ... at most."""
    return random.uniform(0, 0.05 * 2**attempt)


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__
