"""DynamoDB stores of profiles and decisions, with as few calls as DynamoDB allows.

Reads are BatchGetItem (100 keys a call, users' and merchants' together), writes BatchWriteItem (25
items a call); what DynamoDB leaves unprocessed is retried with backoff a few times, then reported
back as unwritten (writes) or raised (reads).
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
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.ports import Profiles
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
    """User profiles by user_id and merchant profiles by merchant_id, each state one compact JSON attribute.

    Both tables are read in the same BatchGetItem calls: a batch's merchants cost no extra call as long
    as its users and merchants together fit in 100 keys.
    """

    def __init__(
        self,
        table_name: str,
        merchant_table_name: str,
        client: DynamoDBClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if table_name == merchant_table_name:
            raise ValueError(f"users and merchants need tables of their own, both are {table_name!r}")
        self.table_name = table_name
        self.merchant_table_name = merchant_table_name
        self._keys = {table_name: "user_id", merchant_table_name: "merchant_id"}
        self._client = client or boto3.client("dynamodb")
        self._sleep = sleep

    def get_many(self, user_ids: Iterable[str], merchant_ids: Iterable[str] = ()) -> Profiles:
        """The stored profiles of these users and merchants; raises ProfileStoreError when a read fails."""
        states = self._states({self.table_name: user_ids, self.merchant_table_name: merchant_ids})
        return Profiles(
            {u: UserProfile.from_json(u, state) for u, state in states[self.table_name].items()},
            {m: MerchantProfile.from_json(m, state) for m, state in states[self.merchant_table_name].items()},
        )

    def put_many(self, profiles: Sequence[UserProfile]) -> set[str]:
        """Write user profiles; return the user ids left unwritten."""
        return self._put(self.table_name, {p.user_id: p.to_json() for p in profiles})

    def put_merchants(self, profiles: Sequence[MerchantProfile]) -> set[str]:
        """Write merchant profiles; return the merchant ids left unwritten."""
        return self._put(self.merchant_table_name, {p.merchant_id: p.to_json() for p in profiles})

    def _states(self, wanted: dict[str, Iterable[str]]) -> dict[str, dict[str, str]]:
        """Per table, id -> stored state of the wanted ids, every table's keys sharing each call's 100."""
        keys = [(table, key_id) for table, ids in wanted.items() for key_id in sorted(set(ids))]
        states: dict[str, dict[str, str]] = {table: {} for table in wanted}
        for start in range(0, len(keys), READ_CHUNK):
            request: dict[str, Any] = {}
            for table, key_id in keys[start : start + READ_CHUNK]:
                entry = request.setdefault(table, {"Keys": [], "ConsistentRead": True})
                entry["Keys"].append({self._keys[table]: {"S": key_id}})
            for table, items in self._batch_get(request).items():
                key = self._keys[table]
                states[table].update((item[key]["S"], item["state"]["S"]) for item in items)
        return states

    def _put(self, table: str, states: dict[str, str]) -> set[str]:
        now = datetime.now(UTC).isoformat()
        key = self._keys[table]
        items = {
            k: {key: {"S": k}, "state": {"S": state}, "updated_at": {"S": now}} for k, state in states.items()
        }
        return batch_write(self._client, table, items, key=key, sleep=self._sleep)

    def _batch_get(self, request: dict[str, Any]) -> dict[str, list[Item]]:
        """One BatchGetItem over several tables, retrying what DynamoDB leaves unprocessed in any of them."""
        tables = ", ".join(request)
        items: dict[str, list[Item]] = {table: [] for table in request}
        for attempt in range(ATTEMPTS):
            try:
                response = self._client.batch_get_item(RequestItems=request)
            except (ClientError, BotoCoreError) as exc:
                raise ProfileStoreError(f"reading profiles from {tables} failed: {_code(exc)}") from exc
            for table, found in response.get("Responses", {}).items():
                items[table].extend(found)
            request = dict(response.get("UnprocessedKeys") or {})
            if not request:
                return items
            self._sleep(_backoff(attempt))
        unread = ", ".join(f"{table}: {len(entry['Keys'])}" for table, entry in request.items())
        raise ProfileStoreError(f"keys left unread ({unread})")


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
