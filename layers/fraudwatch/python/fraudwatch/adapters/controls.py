"""Rules and lists in DynamoDB: read by the functions through a short cache, written by the command line.

Two tables (template.yaml). ListsTable: one item per entry, key (list_name, value), with who added it,
why, when, and an optional expiry that is also the table's TTL attribute (DynamoDB deletes an expired
item within days; the reader ignores it from its expiry on). RulesTable: one item per pushed document,
key `seq` 1, 2, 3..., and item 0, the pointer to the version in force with a copy of its document, so
that a function reads the rules in force with one GetItem.

A function reads both at most every `max_age` seconds (30 by default): a Scan of the lists (a few
pages at most: lists hold thousands of entries, not millions) and one GetItem of the pointer. Between
two reads no batch costs an AWS call. A document that no longer compiles is never swapped in: the
function keeps its last good one. A read that fails keeps what is cached and is tried again after
`retry_after` seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.adapters.aws import CONDITION_FAILED, call_failed
from fraudwatch.adapters.dynamodb import batch_write
from fraudwatch.domain.controls import Controls
from fraudwatch.domain.lists import ListEntry, ListSnapshot
from fraudwatch.domain.rules import NO_RULES, RulesError, RuleSet, compile_rules
from fraudwatch.errors import AwsCallError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEFAULT_MAX_AGE = 30.0
"""Seconds a function keeps the lists and rules it read: a change takes effect within this (plus a batch)."""
RETRY_AFTER = 5.0
ACTIVE = 0
"""The RulesTable item that points at the version in force."""

logger = logging.getLogger("fraudwatch.controls")


class ControlsStoreError(AwsCallError):
    """The lists or rules tables could not be read or written."""


class RulesVersion(NamedTuple):
    """One pushed rules document: its place in the history, the document, who pushed it, when and why."""

    seq: int
    document: str
    """The compiled document as JSON (RuleSet.to_dict)."""
    version: str
    pushed_by: str
    pushed_at: float
    note: str


class ControlsStore:
    """Reads and writes of the two tables: what the functions and the command line share."""

    def __init__(self, lists_table: str, rules_table: str, client: DynamoDBClient | None = None) -> None:
        self.lists_table = lists_table
        self.rules_table = rules_table
        self._client = client or boto3.client("dynamodb")

    # ---------------------------------------------------------------- lists

    def entries(self, list_name: str | None = None) -> list[ListEntry]:
        """Every entry (of one list), expired ones included; raises ControlsStoreError."""
        kwargs: dict[str, Any] = {"TableName": self.lists_table}
        if list_name is not None:
            kwargs["KeyConditionExpression"] = "list_name = :name"
            kwargs["ExpressionAttributeValues"] = {":name": {"S": list_name}}
        operation = "Scan" if list_name is None else "Query"
        call = self._client.scan if list_name is None else self._client.query
        return [_entry(item) for item in self._pages(call, kwargs, operation, self.lists_table)]

    def add(self, entries: Iterable[ListEntry]) -> None:
        """Put entries (one already there is replaced: its who, why and expiry are the new ones)."""
        items = {f"{e.list_name}\x00{e.value}": _entry_item(e) for e in entries}
        batch_write(self._client, self.lists_table, items, key="entry_key", error=ControlsStoreError)

    def remove(self, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Delete entries by (list name, value); the keys that were there (deleting one that is not there
        is no error)."""
        return [
            (list_name, value)
            for list_name, value in keys
            if self._delete({"list_name": {"S": list_name}, "value": {"S": value}})
        ]

    def entry(self, list_name: str, value: str) -> ListEntry | None:
        """One entry by its key (read consistently), or None; raises ControlsStoreError."""
        key = {"list_name": {"S": list_name}, "value": {"S": value}}
        response = self._call(
            "GetItem",
            self.lists_table,
            lambda: self._client.get_item(TableName=self.lists_table, Key=key, ConsistentRead=True),
        )
        return None if "Item" not in response else _entry(response["Item"])

    def remove_entry(self, entry: ListEntry) -> bool:
        """Delete an entry only if it is still this one (who added it and why); whether it was deleted."""
        try:
            self._client.delete_item(
                TableName=self.lists_table,
                Key={"list_name": {"S": entry.list_name}, "value": {"S": entry.value}},
                ConditionExpression="added_by = :by AND reason = :why",
                ExpressionAttributeValues={":by": {"S": entry.added_by}, ":why": {"S": entry.reason}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == f"{CONDITION_FAILED}Exception":
                return False
            raise call_failed(
                ControlsStoreError, exc, operation="DeleteItem", resource=self.lists_table
            ) from exc
        except BotoCoreError as exc:
            raise call_failed(
                ControlsStoreError, exc, operation="DeleteItem", resource=self.lists_table
            ) from exc
        return True

    def _delete(self, key: dict[str, Any]) -> bool:
        """Delete one entry; whether it was there."""
        response = self._call(
            "DeleteItem",
            self.lists_table,
            lambda: self._client.delete_item(TableName=self.lists_table, Key=key, ReturnValues="ALL_OLD"),
        )
        return "Attributes" in response

    # ---------------------------------------------------------------- rules

    def active(self) -> RulesVersion | None:
        """The rules version in force (None before the first push); raises ControlsStoreError."""
        response = self._call(
            "GetItem",
            self.rules_table,
            lambda: self._client.get_item(
                TableName=self.rules_table, Key={"seq": {"N": str(ACTIVE)}}, ConsistentRead=True
            ),
        )
        item = response.get("Item")
        return None if item is None else _version(item, seq=int(item["active"]["N"]))

    def history(self) -> list[RulesVersion]:
        """Every pushed version, oldest first."""
        kwargs: dict[str, Any] = {"TableName": self.rules_table}
        items = self._pages(self._client.scan, kwargs, "Scan", self.rules_table)
        return sorted((_version(i) for i in items if int(i["seq"]["N"]) != ACTIVE), key=lambda v: v.seq)

    def version(self, seq: int) -> RulesVersion | None:
        """One pushed version, or None."""
        if seq == ACTIVE:  # the item that points at the version in force, not a version of its own
            return None
        response = self._call(
            "GetItem",
            self.rules_table,
            lambda: self._client.get_item(TableName=self.rules_table, Key={"seq": {"N": str(seq)}}),
        )
        item = response.get("Item")
        return None if item is None else _version(item)

    def push(self, rules: RuleSet, *, pushed_by: str, note: str, now: float) -> RulesVersion:
        """Store a compiled document as the next version and put it in force."""
        history = self.history()
        seq = (history[-1].seq if history else 0) + 1
        pushed = RulesVersion(seq, json.dumps(rules.to_dict()), rules.version, pushed_by, now, note)
        self._call(
            "PutItem",
            self.rules_table,
            lambda: self._client.put_item(
                TableName=self.rules_table,
                Item=_version_item(pushed),
                ConditionExpression="attribute_not_exists(seq)",
            ),
        )
        self.activate(pushed)
        return pushed

    def activate(self, version: RulesVersion) -> None:
        """Put a stored version in force (a push, or a rollback to an earlier one)."""
        item = _version_item(version) | {"seq": {"N": str(ACTIVE)}, "active": {"N": str(version.seq)}}
        self._call(
            "PutItem",
            self.rules_table,
            lambda: self._client.put_item(TableName=self.rules_table, Item=item),
        )

    # ---------------------------------------------------------------- calls

    def _pages(
        self, call: Callable[..., Any], kwargs: dict[str, Any], operation: str, table: str
    ) -> Iterator[dict[str, Any]]:
        while True:
            page = self._call(operation, table, lambda: call(**kwargs))
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _call[T](self, operation: str, table: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            raise call_failed(ControlsStoreError, exc, operation=operation, resource=table) from exc


class CachedControls:
    """The controls in force for the scoring service: re-read at most every `max_age` seconds."""

    def __init__(
        self,
        store: ControlsStore,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._max_age = max_age
        self._retry_after = retry_after
        self._clock = clock
        self._wall_clock = wall_clock
        self._controls = Controls()
        self._rules_seq: int | None = None
        self._next_read = float("-inf")
        self.refused: int | None = None
        """The stored version last refused (it does not compile here), if any."""
        self.read_errors = 0

    def current(self) -> Controls:
        """The cached controls, read again first if they are older than `max_age`."""
        now = self._clock()
        if now >= self._next_read:
            self._read(now)
        return self._controls

    def _read(self, now: float) -> None:
        try:
            entries = self._store.entries()
            active = self._store.active()
        except ControlsStoreError as exc:
            self.read_errors += 1
            self._next_read = now + self._retry_after
            logger.warning(
                "controls not read: keeping the cached ones",
                extra={"operation": exc.operation, "code": exc.code, "rules_version": self._controls.version},
            )
            return
        rules = self._controls.rules
        if active is None:
            rules, self._rules_seq = NO_RULES, None
        elif active.seq != self._rules_seq and active.seq != self.refused:
            try:
                rules = compile_rules(json.loads(active.document))
                self._rules_seq = active.seq
            except (RulesError, ValueError) as exc:
                self.refused = active.seq
                logger.error(
                    "rules version refused: keeping the last good one",
                    extra={"refused": active.seq, "error": str(exc), "rules_version": rules.version},
                )
        self._controls = Controls(rules, ListSnapshot.of(entries, self._wall_clock()))
        self._next_read = now + self._max_age


def _entry_item(entry: ListEntry) -> dict[str, Any]:
    item: dict[str, Any] = {
        "list_name": {"S": entry.list_name},
        "value": {"S": entry.value},
        "added_by": {"S": entry.added_by},
        "reason": {"S": entry.reason},
        "added_at": {"N": repr(entry.added_at)},
        "entry_key": {"S": f"{entry.list_name}\x00{entry.value}"},
    }
    if entry.expires_at is not None:
        item["expires_at"] = {"N": str(int(entry.expires_at))}
    return item


def _entry(item: dict[str, Any]) -> ListEntry:
    expires = item.get("expires_at")
    return ListEntry(
        item["list_name"]["S"],
        item["value"]["S"],
        item.get("added_by", {}).get("S", ""),
        item.get("reason", {}).get("S", ""),
        float(Decimal(item.get("added_at", {}).get("N", "0"))),
        None if expires is None else float(Decimal(expires["N"])),
    )


def _version_item(version: RulesVersion) -> dict[str, Any]:
    return {
        "seq": {"N": str(version.seq)},
        "document": {"S": version.document},
        "version": {"S": version.version},
        "pushed_by": {"S": version.pushed_by},
        "pushed_at": {"N": repr(version.pushed_at)},
        "note": {"S": version.note},
    }


def _version(item: dict[str, Any], seq: int | None = None) -> RulesVersion:
    return RulesVersion(
        int(item["seq"]["N"]) if seq is None else seq,
        item["document"]["S"],
        item["version"]["S"],
        item["pushed_by"]["S"],
        float(Decimal(item["pushed_at"]["N"])),
        item.get("note", {}).get("S", ""),
    )
