"""DynamoDB stores of profiles and decisions, with as few calls as DynamoDB allows.

Reads are BatchGetItem (100 keys a call, users' and merchants' together); decisions and merchant
profiles are written with BatchWriteItem (25 items a call). User profiles have two writers, the stream
and the inline API (DESIGN.md, decision 6), so each is written only if its stored version is still the
one read: TransactWriteItems, 100 conditional puts a call (BatchWriteItem takes no conditions); the
inline API's decision goes in its profile's transaction (domain/scoring.py says why). What
DynamoDB leaves unprocessed is retried with backoff a few times, and so is a write call that failed
transiently; a permanent failure is not retried, nor a failed read call (the whole batch waits on it,
and its redelivery retries it). What is still unread or unwritten is raised as a ProfileStoreError or
DecisionStoreError naming the keys, the operation and AWS's error code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.adapters.aws import (
    CONDITION_FAILED,
    UNPROCESSED_ITEMS,
    UNPROCESSED_KEYS,
    Failure,
    call_failed,
    given_up,
    is_transient,
    retry_batch,
)
from fraudwatch.adapters.labels import label_item, label_key
from fraudwatch.domain.activity import payment_day
from fraudwatch.domain.decision import Decision, DecisionRecord, Reason, ShadowVerdict, Thresholds
from fraudwatch.domain.label import Label
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.ports import DecisionPage, Profiles
from fraudwatch.domain.profile import UserProfile
from fraudwatch.errors import AwsCallError, DecisionStoreError, InvalidRecordError, ProfileStoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

READ_CHUNK = 100
BY_USER_INDEX = "by-user"
"""The decisions table's index of a user's decisions over time (template.yaml)."""
BY_PAYMENT_DAY_INDEX = "by-payment-day"
"""The decisions table's index of the merchant and card of each payment, by the payment's UTC day."""
WRITE_CHUNK = 25
TRANSACT_CHUNK = 100
TRANSACT_BYTES = 3_500_000
"""Bytes of profiles per TransactWriteItems call, under its 4 MB limit with room for keys and names."""
DECISION_TTL_DAYS = 90

Item = dict[str, Any]
TableKey = tuple[str, str]
"""A key to read: its table, and the id it holds."""

_UNREAD = Failure(UNPROCESSED_KEYS, retryable=True)
_UNWRITTEN = Failure(UNPROCESSED_ITEMS, retryable=True)
_CONFLICT = Failure(CONDITION_FAILED, retryable=False)
_CANCELLED_WITH_OTHERS = Failure("TransactionCanceledException", retryable=True)
"""An item of a cancelled transaction that was itself fine: written again without the others."""
STATE = "state"
"""The attribute that holds a stored profile: its JSON (`UserProfile.to_json`, `MerchantProfile.to_json`)."""


def profile_item(key: str, key_id: str, state: str, written_at: str) -> Item:
    """A profile as its table stores it: the key (`user_id` or `merchant_id`), the state, when written."""
    return {key: {"S": key_id}, STATE: {"S": state}, "updated_at": {"S": written_at}}


def stored_state(item: Item) -> str:
    """The profile state a stored item holds."""
    return str(item[STATE]["S"])


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
        labels_table_name: str | None = None,
        decisions_table_name: str | None = None,
    ):
        if table_name == merchant_table_name:
            raise ValueError(f"users and merchants need tables of their own, both are {table_name!r}")
        self.table_name = table_name
        self.merchant_table_name = merchant_table_name
        self.labels_table_name = labels_table_name
        self.decisions_table_name = decisions_table_name
        self._keys = {table_name: "user_id", merchant_table_name: "merchant_id"}
        if decisions_table_name is not None:
            self._keys[decisions_table_name] = "transaction_id"
        self._client = client or boto3.client("dynamodb")
        self._sleep = sleep

    def get_many(
        self, user_ids: Iterable[str], merchant_ids: Iterable[str] = (), transaction_ids: Iterable[str] = ()
    ) -> Profiles:
        """The stored profiles of these users and merchants, and the decisions on these transactions (the
        decisions table's, read in the same calls); raises ProfileStoreError when a read fails."""
        wanted = {self.table_name: user_ids, self.merchant_table_name: merchant_ids}
        if transaction_ids:
            wanted[self._decisions_table()] = transaction_ids
        items = self._items(wanted)
        users = {}
        for user_id, item in items[self.table_name].items():
            users[user_id] = profile = UserProfile.from_json(user_id, stored_state(item))
            profile.version = int(item.get("version", {"N": "0"})["N"])
        return Profiles(
            users,
            {
                m: MerchantProfile.from_json(m, stored_state(i))
                for m, i in items[self.merchant_table_name].items()
            },
            {t: decision_of(i) for t, i in items.get(self.decisions_table_name or "", {}).items()},
        )

    def _decisions_table(self) -> str:
        if self.decisions_table_name is None:
            raise ValueError("this profile store was given no decisions table")
        return self.decisions_table_name

    def put_many(self, profiles: Sequence[UserProfile], decisions: Sequence[DecisionRecord] = ()) -> set[str]:
        """Write user profiles, each only if its stored version is the one read, each with its user's
        `decisions` in the same transaction; return the conflicts.

        A conflict is a user whose profile another writer changed since it was read: nothing of it is
        written, and the caller re-reads and recomputes it. The profiles written get their new version.
        Raises ProfileStoreError naming the user ids a failure left unwritten.
        """
        by_id = {p.user_id: p for p in profiles}
        states = {user_id: p.to_json() for user_id, p in by_id.items()}
        now = datetime.now(UTC).isoformat()
        decided: dict[str, list[DecisionRecord]] = {}
        if decisions:
            self._decisions_table()
            for d in decisions:
                decided.setdefault(d.user_id, []).append(d)

        def write(chunk: list[str]) -> list[tuple[str, Failure]]:
            return self._transact(chunk, by_id, states, now, decided)

        given: list[tuple[str, Failure]] = []
        for chunk in _transact_chunks(states, decided):
            given += retry_batch(write, chunk, self._sleep)
        failed = [(user_id, failure) for user_id, failure in given if failure is not _CONFLICT]
        if failed:
            operation = "TransactWriteItems"
            raise given_up(ProfileStoreError, failed, operation=operation, resource=self.table_name)
        return {user_id for user_id, _ in given}

    def _transact(
        self,
        chunk: list[str],
        profiles: dict[str, UserProfile],
        states: dict[str, str],
        now: str,
        decided: dict[str, list[DecisionRecord]],
    ) -> list[tuple[str, Failure]]:
        """One TransactWriteItems of conditional puts (and their users' decisions); return the users not
        written, and why.

        A transaction is all or nothing: when some of its users conflict, the others are returned as
        retryable and go again in a transaction of their own. Its ClientRequestToken is made from its
        content, so a retry of a call whose response was lost changes nothing (for 10 minutes), and two
        writers' different decisions on the same profile version never pass for one request.
        """
        actions: list[Any] = []
        owners: list[str] = []
        for u in chunk:
            actions.append(self._conditional_put(profiles[u], states[u], now))
            owners.append(u)
            for d in decided.get(u, ()):
                actions.append({"Put": _own_decision_put(self._decisions_table(), d)})
                owners.append(u)
        content = "\n".join(
            f"{u} {profiles[u].version} {states[u]}"
            + "".join(f" {d.transaction_id} {d.decided_at}" for d in decided.get(u, ()))
            for u in chunk
        )
        token = hashlib.sha256(content.encode()).hexdigest()[:36]
        try:
            self._client.transact_write_items(TransactItems=actions, ClientRequestToken=token)
        except (ClientError, BotoCoreError) as exc:
            return _cancelled(owners, exc)
        for user_id in chunk:
            profiles[user_id].version += 1
        return []

    def _conditional_put(self, profile: UserProfile, state: str, now: str) -> dict[str, Any]:
        put: dict[str, Any] = {
            "TableName": self.table_name,
            "Item": profile_item("user_id", profile.user_id, state, now)
            | {"version": {"N": str(profile.version + 1)}},
        }
        # Version 0 is a profile never stored, or stored before profiles had versions.
        if profile.version:
            put["ConditionExpression"] = "version = :read"
            put["ExpressionAttributeValues"] = {":read": {"N": str(profile.version)}}
        else:
            put["ConditionExpression"] = "attribute_not_exists(version)"
        return {"Put": put}

    def put_merchants(self, profiles: Sequence[MerchantProfile], labels: Sequence[Label] = ()) -> set[str]:
        """Write merchant profiles, and the labels into the labels table (if any) in the same
        BatchWriteItem calls; raises ProfileStoreError naming the merchant ids of what was left unwritten
        (a label by its merchant)."""
        now = datetime.now(UTC).isoformat()
        puts: list[Put] = [
            (
                self.merchant_table_name,
                p.merchant_id,
                profile_item("merchant_id", p.merchant_id, p.to_json(), now),
            )
            for p in profiles
        ]
        if self.labels_table_name is not None:
            # one put per item key: a batch call refuses the same key twice
            items = {(label.transaction_id, label_key(label)): label for label in labels}
            puts += [
                (self.labels_table_name, label.merchant_id, label_item(label)) for label in items.values()
            ]
        return packed_write(self._client, puts, error=ProfileStoreError, sleep=self._sleep)

    def _items(self, wanted: dict[str, Iterable[str]]) -> dict[str, dict[str, Item]]:
        """Per table, id -> stored item of the wanted ids, strongly consistent.

        A failed call raises at once, after botocore's own retries: a batch cannot be scored without
        its profiles, and its redelivery retries the read.
        """
        return batch_get(self._client, wanted, self._keys, error=ProfileStoreError, sleep=self._sleep)


class DynamoDecisionStore:
    """Decisions keyed by transaction_id, queryable by user over time, expiring after DECISION_TTL_DAYS."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.table_name = table_name
        self._client = client or boto3.client("dynamodb")
        self._sleep = sleep

    def put_many(self, decisions: Sequence[DecisionRecord]) -> set[str]:
        """Write decisions; raises DecisionStoreError naming the transaction ids left unwritten."""
        items = {d.transaction_id: decision_item(d) for d in decisions}
        return batch_write(
            self._client,
            self.table_name,
            items,
            key="transaction_id",
            error=DecisionStoreError,
            sleep=self._sleep,
        )

    def get(self, transaction_id: str) -> DecisionRecord | None:
        """The decision on a transaction, or None; raises DecisionStoreError when the read fails."""
        try:
            item = self._client.get_item(
                TableName=self.table_name, Key={"transaction_id": {"S": transaction_id}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise call_failed(DecisionStoreError, exc, operation="GetItem", resource=self.table_name) from exc
        return None if item is None else decision_of(item)

    def by_user(self, user_id: str, since: str | None, limit: int, cursor: str | None) -> DecisionPage:
        """A user's decisions from `since` on, newest first, through the by-user index (eventually
        consistent, as every global secondary index is); raises DecisionStoreError."""
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": BY_USER_INDEX,
            "KeyConditionExpression": "user_id = :user"
            + ("" if since is None else " AND decided_at >= :since"),
            "ExpressionAttributeValues": {":user": {"S": user_id}}
            | ({} if since is None else {":since": {"S": since}}),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor is not None:
            query["ExclusiveStartKey"] = _start_key(cursor, user_id)
        try:
            page = self._client.query(**query)
        except (ClientError, BotoCoreError) as exc:
            raise call_failed(
                DecisionStoreError, exc, operation="Query", resource=f"{self.table_name}/{BY_USER_INDEX}"
            ) from exc
        last = page.get("LastEvaluatedKey")
        return DecisionPage(
            [decision_of(item) for item in page["Items"]], None if not last else _cursor(last)
        )

    def get_many(self, transaction_ids: Iterable[str]) -> Iterator[DecisionRecord]:
        """The decisions on these transactions (those not found left out), 100 keys a BatchGetItem, what
        DynamoDB leaves unprocessed read again with backoff, eventually consistent; raises
        DecisionStoreError.

        The daily matured metrics' read: the decisions that have a label, not the days' every decision.
        """
        wanted = sorted(set(transaction_ids))
        keys = {self.table_name: "transaction_id"}
        for start in range(0, len(wanted), READ_CHUNK):
            chunk = {self.table_name: wanted[start : start + READ_CHUNK]}
            read = batch_get(
                self._client, chunk, keys, error=DecisionStoreError, sleep=self._sleep, consistent=False
            )
            yield from (decision_of(item) for item in read[self.table_name].values())

    def payments_on(self, days: Iterable[int]) -> Iterator[tuple[str, str, int]]:
        """The payment behind each decision on a transaction of these UTC days (day numbers), as (merchant
        id, card, day), for the daily count of merchants' payments (`fraudwatch.domain.activity`);
        raises DecisionStoreError.

        A Query a day (and a call a page of it) on the by-payment-day index, which holds only the
        merchant and the card of each decision: the days counted are read, not the table's 90 days.
        Eventually consistent, as every global secondary index: the job runs minutes after midnight.
        """
        for day in days:
            pages = self._client.get_paginator("query").paginate(
                TableName=self.table_name,
                IndexName=BY_PAYMENT_DAY_INDEX,
                KeyConditionExpression="paid_day = :day",
                ExpressionAttributeValues={":day": {"N": str(day)}},
                ProjectionExpression="merchant_id, user_id",
            )
            try:
                for page in pages:
                    for item in page["Items"]:
                        yield item["merchant_id"]["S"], item["user_id"]["S"], day
            except (ClientError, BotoCoreError) as exc:
                raise call_failed(
                    DecisionStoreError,
                    exc,
                    operation="Query",
                    resource=f"{self.table_name}/{BY_PAYMENT_DAY_INDEX}",
                ) from exc


def batch_get[E: AwsCallError](
    client: DynamoDBClient,
    wanted: Mapping[str, Iterable[str]],
    key_names: Mapping[str, str],
    *,
    error: type[E],
    sleep: Callable[[float], None],
    consistent: bool = True,
) -> dict[str, dict[str, Item]]:
    """Per table, id -> stored item of the wanted ids (`key_names`: each table's key attribute), every
    table's keys sharing each BatchGetItem's 100; what DynamoDB leaves unprocessed is read again with
    backoff. A failed call raises `error` at once (after botocore's own retries), as do keys still
    unread after the last attempt."""
    keys = [(table, key_id) for table, ids in wanted.items() for key_id in sorted(set(ids))]
    found: dict[str, dict[str, Item]] = {table: {} for table in wanted}

    def read(chunk: list[TableKey]) -> list[tuple[TableKey, Failure]]:
        request: dict[str, Any] = {}
        for table, key_id in chunk:
            entry = request.setdefault(table, {"Keys": [], "ConsistentRead": consistent})
            entry["Keys"].append({key_names[table]: {"S": key_id}})
        try:
            response = client.batch_get_item(RequestItems=request)
        except (ClientError, BotoCoreError) as exc:
            raise call_failed(
                error,
                exc,
                operation="BatchGetItem",
                resource=", ".join(sorted(request)),
                unwritten=(key_id for _, key_id in chunk),
            ) from exc
        for table, items in response.get("Responses", {}).items():
            key = key_names[table]
            found[table].update((item[key]["S"], item) for item in items)
        return [
            ((table, item_key[key_names[table]]["S"]), _UNREAD)
            for table, entry in (response.get("UnprocessedKeys") or {}).items()
            for item_key in entry["Keys"]
        ]

    for start in range(0, len(keys), READ_CHUNK):
        unread = retry_batch(read, keys[start : start + READ_CHUNK], sleep)
        if unread:
            raise given_up(
                error,
                [(key_id, failure) for (_, key_id), failure in unread],
                operation="BatchGetItem",
                resource=", ".join(sorted({table for (table, _), _ in unread})),
            )
    return found


def _own_decision_put(table: str, d: DecisionRecord) -> Item:
    """A decision put that never replaces another user's decision on the same transaction id (two
    requests racing with one id for two users: the second is cancelled, as a conflict, and re-read)."""
    return {
        "TableName": table,
        "Item": decision_item(d),
        "ConditionExpression": "attribute_not_exists(transaction_id) OR user_id = :user",
        "ExpressionAttributeValues": {":user": {"S": d.user_id}},
    }


def decision_item(d: DecisionRecord) -> Item:
    """A decision as the decisions table stores it, expiring DECISION_TTL_DAYS after it was made."""
    decided = datetime.fromisoformat(d.decided_at).timestamp()
    return (
        {
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
            "reasons": {"L": [{"M": _reason_attributes(r)} for r in d.reasons]},
            "decided_at": {"S": d.decided_at},
            "paid_day": {"N": str(payment_day(d.transaction_time))},
            "expires_at": {"N": str(int(decided) + DECISION_TTL_DAYS * 86400)},
        }
        | _rules_attributes(d)
        | _challenger_attributes(d)
    )


def _reason_attributes(reason: Reason) -> Item:
    """One feature's contribution as a map DynamoDB can query (a missing value is NULL)."""
    value = {"NULL": True} if reason.value is None else {"N": repr(reason.value)}
    return {
        "feature": {"S": reason.feature},
        "value": value,
        "contribution": {"N": repr(reason.contribution)},
    }


def _reason_of(attributes: Item) -> Reason:
    value = attributes["value"]
    return Reason(
        attributes["feature"]["S"],
        None if "NULL" in value else float(value["N"]),
        float(attributes["contribution"]["N"]),
    )


def _reasons_of(attribute: Item) -> tuple[Reason, ...]:
    """The reasons of a stored decision: a list of maps, or the JSON string items written before held."""
    if "S" in attribute:
        return tuple(Reason(**reason) for reason in json.loads(attribute["S"]))
    return tuple(_reason_of(entry["M"]) for entry in attribute["L"])


def _rules_attributes(d: DecisionRecord) -> Item:
    """The rules version and the codes of the rules and lists that matched, where rules were consulted."""
    if not d.rules_version:
        return {}
    return {
        "rules_version": {"S": d.rules_version},
        "rule_reasons": {"L": [{"S": code} for code in d.rule_reasons]},
    }


def _challenger_attributes(d: DecisionRecord) -> Item:
    """The challenger's version, score and would-be decision, beside the champion's (none without one)."""
    if d.challenger is None:
        return {}
    return {
        "challenger_version": {"S": d.challenger.model_version},
        "challenger_score": {"N": repr(d.challenger.score)},
        "challenger_decision": {"S": d.challenger.decision.value},
    }


def _challenger_of(item: Item) -> ShadowVerdict | None:
    if "challenger_version" not in item:
        return None
    return ShadowVerdict(
        item["challenger_version"]["S"],
        float(item["challenger_score"]["N"]),
        Decision(item["challenger_decision"]["S"]),
    )


def _rule_reasons_of(item: Item) -> tuple[str, ...]:
    attribute = item.get("rule_reasons")
    if attribute is None:
        return ()
    if "S" in attribute:  # written before codes were a list
        return tuple(json.loads(attribute["S"]))
    return tuple(entry["S"] for entry in attribute["L"])


def decision_of(item: Item) -> DecisionRecord:
    """A stored decision item back as the record written (`DynamoDecisionStore._item`'s inverse)."""
    return DecisionRecord(
        transaction_id=item["transaction_id"]["S"],
        user_id=item["user_id"]["S"],
        merchant_id=item["merchant_id"]["S"],
        amount=float(item["amount"]["N"]),
        currency=item["currency"]["S"],
        transaction_time=item["transaction_time"]["S"],
        decision=Decision(item["decision"]["S"]),
        score=float(item["score"]["N"]),
        model_version=item["model_version"]["S"],
        thresholds=Thresholds(float(item["flag_threshold"]["N"]), float(item["reject_threshold"]["N"])),
        decided_at=item["decided_at"]["S"],
        reasons=_reasons_of(item["reasons"]),
        rule_reasons=_rule_reasons_of(item),
        rules_version=item.get("rules_version", {}).get("S", ""),
        challenger=_challenger_of(item),
    )


_CURSOR_KEYS = ("transaction_id", "user_id", "decided_at")


def _cursor(last_key: Item) -> str:
    """The next page's cursor: the index's last key, as URL-safe base64 of its JSON."""
    values = [last_key[name]["S"] for name in _CURSOR_KEYS]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _start_key(cursor: str, user_id: str) -> Item:
    """The index key a cursor stands for; InvalidRecordError for one not made by `_cursor` for this user."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:  # binascii.Error, UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidRecordError("cursor", "not a cursor this API returned") from exc
    if (
        not isinstance(values, list)
        or len(values) != len(_CURSOR_KEYS)
        or not all(isinstance(v, str) and v for v in values)
        or values[1] != user_id
    ):
        raise InvalidRecordError("cursor", "not a cursor this API returned for this user")
    return {name: {"S": value} for name, value in zip(_CURSOR_KEYS, values, strict=True)}


DECISION_BYTES = 4_000
"""What a decision adds to a transaction, at most (its item is about 1 KB with three reasons)."""


def _transact_chunks(states: dict[str, str], decided: dict[str, list[DecisionRecord]]) -> list[list[str]]:
    """The ids in chunks of TRANSACT_CHUNK actions at most (a profile and its decisions), and
    TRANSACT_BYTES at most."""
    chunks: list[list[str]] = [[]]
    size = actions = 0
    for key_id, state in states.items():
        decisions = len(decided.get(key_id, ()))
        cost = len(state) + len(key_id.encode()) + decisions * DECISION_BYTES
        if chunks[-1] and (actions + 1 + decisions > TRANSACT_CHUNK or size + cost > TRANSACT_BYTES):
            chunks.append([])
            size = actions = 0
        chunks[-1].append(key_id)
        size += cost
        actions += 1 + decisions
    return [chunk for chunk in chunks if chunk]


def _cancelled(owners: list[str], exc: ClientError | BotoCoreError) -> list[tuple[str, Failure]]:
    """Each id of a failed TransactWriteItems with its failure, from the cancellation reasons if any;
    `owners` names the id of each action, in order (a profile's decisions share its id).

    Reasons come in the order of the actions: `ConditionalCheckFailed` is a conflict (another writer's
    version), `None` an action that was fine, any other code its own failure (`TransactionConflict`,
    a concurrent transaction on the item, passes by itself). An id takes its worst action's: a
    conflict, then a failure of its own, then cancelled with the others.
    """
    failure = Failure.of_exception(exc)
    reasons = exc.response.get("CancellationReasons") if isinstance(exc, ClientError) else None
    if not reasons or len(reasons) != len(owners):
        return [(key_id, failure) for key_id in dict.fromkeys(owners)]
    failed: dict[str, Failure] = {}
    for key_id, reason in zip(owners, reasons, strict=True):
        code = str(reason.get("Code") or "None")
        if code == CONDITION_FAILED:
            failed[key_id] = _CONFLICT
        elif code != "None" and failed.get(key_id) is not _CONFLICT:
            failed[key_id] = Failure(code, is_transient(code), failure.status, exc)
        else:
            failed.setdefault(key_id, _CANCELLED_WITH_OTHERS)
    return list(failed.items())


def batch_write(
    client: DynamoDBClient,
    table: str,
    items: dict[str, Item],
    *,
    key: str,
    error: type[AwsCallError],
    sleep: Callable[[float], None] = time.sleep,
) -> set[str]:
    """BatchWriteItem of one table's items in chunks of 25; raise `error` naming the keys (their `key`
    attribute) left unwritten, if any (`packed_write`)."""
    puts = [(table, item[key]["S"], item) for item in items.values()]
    return packed_write(client, puts, error=error, sleep=sleep)


Put = tuple[str, str, Item]
"""One put of a BatchWriteItem: its table, the id a failure reports it by (its owner), the item."""


def packed_write(
    client: DynamoDBClient,
    puts: Sequence[Put],
    *,
    error: type[AwsCallError],
    sleep: Callable[[float], None] = time.sleep,
) -> set[str]:
    """BatchWriteItem in chunks of 25 puts, any tables' together; raise `error` naming the owners of the
    puts left unwritten, if any.

    What DynamoDB leaves unprocessed, and a call that failed transiently (throttling after botocore's
    own retries, a 5xx, a timeout), is retried with backoff; a permanent failure (access denied, a
    missing table, a validation error, an unusable KMS key) stops its chunk at once. Every chunk is
    tried, so that a chunk refused costs the other chunks' records nothing.
    """

    def write(chunk: list[int]) -> list[tuple[int, Failure]]:
        requests: dict[str, list[Any]] = {}
        for i in chunk:
            requests.setdefault(puts[i][0], []).append({"PutRequest": {"Item": puts[i][2]}})
        try:
            response = client.batch_write_item(RequestItems=requests)
        except (ClientError, BotoCoreError) as exc:
            failure = Failure.of_exception(exc)
            return [(i, failure) for i in chunk]
        unprocessed = response.get("UnprocessedItems") or {}
        if not unprocessed:
            return []
        left = {
            (table, _canonical(request["PutRequest"]["Item"]))
            for table, requests_left in unprocessed.items()
            for request in requests_left
        }
        return [(i, _UNWRITTEN) for i in chunk if (puts[i][0], _canonical(puts[i][2])) in left]

    failed: list[tuple[int, Failure]] = []
    for start in range(0, len(puts), WRITE_CHUNK):
        failed += retry_batch(write, list(range(start, min(start + WRITE_CHUNK, len(puts)))), sleep)
    if failed:
        tables = ", ".join(sorted({puts[i][0] for i, _ in failed}))
        owned = [(puts[i][1], failure) for i, failure in failed]
        raise given_up(error, owned, operation="BatchWriteItem", resource=tables)
    return set()


def _canonical(item: Item) -> str:
    return json.dumps(item, sort_keys=True)
