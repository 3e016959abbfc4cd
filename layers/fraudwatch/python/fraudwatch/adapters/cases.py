"""Cases in DynamoDB, verdicts as labels on Kinesis, and the queue's figures for the metrics.

CasesTable (template.yaml): one item per case, key `case_id` (the alerted transaction's id). What the
alert said is kept as JSON text (`decision`, `recent`), never rewritten; the analysts' state is plain
attributes, and the history JSON text. Three indexes: `by-status` (status, status_at: the queue, oldest
first, and the verdicts of the last minutes), `by-user` (user_id, opened_at) and `by-assignee`
(assignee, status_at; sparse: only assigned cases are in it). The top-level `merchant_id`,
`rule_reasons` and `reason_features` are what the queue's filters read.

Opening is a PutItem conditional on no item with this id (an alert delivered again opens nothing, and
never overwrites what an analyst did); every later write is a PutItem conditional on the version read.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.adapters.aws import CONDITION_FAILED, call_failed
from fraudwatch.domain.cases import (
    Case,
    CaseConflict,
    CaseEvent,
    CasePage,
    CaseStatus,
    QueueFilter,
    RecentDecision,
    Verdict,
    decision_from_alert,
)
from fraudwatch.errors import AwsCallError, InvalidRecordError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient

BY_STATUS = "by-status"
BY_USER = "by-user"
BY_ASSIGNEE = "by-assignee"

Item = dict[str, Any]


class CaseStoreError(AwsCallError):
    """The cases table could not be read or written."""


class LabelPutError(AwsCallError):
    """A verdict's label could not be put on the stream."""


class DynamoCaseStore:
    """The cases table (CaseStore)."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client or boto3.client("dynamodb")

    def open(self, case: Case) -> bool:
        """Put a new case unless its id exists; whether it was put."""
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item=case_item(case),
                ConditionExpression="attribute_not_exists(case_id)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == f"{CONDITION_FAILED}Exception":
                return False
            raise call_failed(CaseStoreError, exc, operation="PutItem", resource=self.table_name) from exc
        except BotoCoreError as exc:
            raise call_failed(CaseStoreError, exc, operation="PutItem", resource=self.table_name) from exc
        return True

    def get(self, case_id: str) -> Case | None:
        """A case by id, read consistently, or None."""
        response = self._call(
            "GetItem",
            lambda: self._client.get_item(
                TableName=self.table_name, Key={"case_id": {"S": case_id}}, ConsistentRead=True
            ),
        )
        item = response.get("Item")
        return None if item is None else case_of(item)

    def save(self, case: Case, read_version: int) -> None:
        """Write a changed case only over the version read; CaseConflict when someone else wrote since."""
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item=case_item(case),
                ConditionExpression="version = :read",
                ExpressionAttributeValues={":read": {"N": str(read_version)}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == f"{CONDITION_FAILED}Exception":
                raise CaseConflict(
                    f"case {case.case_id!r} changed since it was read (version {read_version}): read it again"
                ) from exc
            raise call_failed(CaseStoreError, exc, operation="PutItem", resource=self.table_name) from exc
        except BotoCoreError as exc:
            raise call_failed(CaseStoreError, exc, operation="PutItem", resource=self.table_name) from exc

    def queue(self, where: QueueFilter, limit: int, cursor: str | None) -> CasePage:
        """Cases of a status, oldest first, filtered; `limit` a page (queried on until it is full).

        Through `by-status`, or `by-assignee` for an analyst's cases, or `by-user` for a user's (their
        status then a filter); the other criteria are query filters.
        """
        index, key, value = _index_of(where)
        names = {"#key": key}
        values: Item = {":key": {"S": value}}
        filters = []
        if key != "status":  # DynamoDB refuses a name or a value the expressions do not use
            names["#status"], values[":status"] = "status", {"S": where.status.value}
            filters.append("#status = :status")
        for condition, placeholder, wanted in (
            ("merchant_id = :merchant", ":merchant", where.merchant),
            ("contains(rule_reasons, :rule)", ":rule", where.rule),
            ("contains(reason_features, :reason)", ":reason", where.reason),
        ):
            if wanted is not None:
                filters.append(condition)
                values[placeholder] = {"S": wanted}
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index,
            "KeyConditionExpression": "#key = :key",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": True,
            "Limit": limit,
        }
        if filters:
            query["FilterExpression"] = " AND ".join(filters)
        if cursor is not None:
            query["ExclusiveStartKey"] = _start_key(cursor, index)
        cases: list[Case] = []
        while True:
            page = self._call("Query", lambda: self._client.query(**query), index=index)
            cases.extend(case_of(item) for item in page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last or len(cases) >= limit:
                break
            query["ExclusiveStartKey"] = last
        more = len(cases) > limit or bool(last)
        cases = cases[:limit]
        return CasePage(cases, _cursor(cases[-1], index) if cases and more else None)

    def count_open(self) -> tuple[int, str | None]:
        """How many cases are open, and when the oldest was opened (None: no open case)."""
        oldest = self._call(
            "Query",
            lambda: self._client.query(**self._status_query(CaseStatus.OPEN), Limit=1),
            index=BY_STATUS,
        ).get("Items", [])
        count, kwargs = 0, self._status_query(CaseStatus.OPEN) | {"Select": "COUNT"}
        while True:
            page = self._call("Query", lambda: self._client.query(**kwargs), index=BY_STATUS)
            count += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return count, (oldest[0]["status_at"]["S"] if oldest else None)

    def verdicts_between(self, start: str, end: str) -> dict[Verdict, int]:
        """Verdicts given from `start` (included) to `end` (excluded), ISO 8601 UTC, by kind."""
        kwargs = self._status_query(CaseStatus.CLOSED)
        kwargs["KeyConditionExpression"] += " AND status_at BETWEEN :start AND :end"
        kwargs["ExpressionAttributeValues"] |= {":start": {"S": start}, ":end": {"S": end}}
        kwargs["ProjectionExpression"] = "verdict, status_at"
        found = dict.fromkeys(Verdict, 0)
        while True:
            page = self._call("Query", lambda: self._client.query(**kwargs), index=BY_STATUS)
            for item in page.get("Items", []):
                if item["status_at"]["S"] < end and "verdict" in item:
                    found[Verdict(item["verdict"]["S"])] += 1
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _status_query(self, status: CaseStatus) -> dict[str, Any]:
        return {
            "TableName": self.table_name,
            "IndexName": BY_STATUS,
            "KeyConditionExpression": "#status = :status",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":status": {"S": status.value}},
        }

    def _call[T](self, operation: str, call: Callable[[], T], index: str | None = None) -> T:
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            resource = self.table_name if index is None else f"{self.table_name}/{index}"
            raise call_failed(CaseStoreError, exc, operation=operation, resource=resource) from exc


class KinesisLabels:
    """Labels on the transactions stream, partition key merchant_id (LabelSink)."""

    def __init__(self, stream_name: str, client: KinesisClient | None = None) -> None:
        self.stream_name = stream_name
        self._client = client or boto3.client("kinesis")

    def put_label(self, label: Mapping[str, Any]) -> None:
        """One PutRecord; LabelPutError when it fails (closing again puts it again)."""
        try:
            self._client.put_record(
                StreamName=self.stream_name,
                Data=json.dumps(label).encode(),
                PartitionKey=str(label["merchant_id"]),
            )
        except (ClientError, BotoCoreError) as exc:
            raise call_failed(LabelPutError, exc, operation="PutRecord", resource=self.stream_name) from exc


# -------------------------------------------------------------------------------------------- items


def case_item(case: Case) -> Item:
    """A case as the table keeps it."""
    d = case.decision
    item: Item = {
        "case_id": {"S": case.case_id},
        "status": {"S": case.status.value},
        "status_at": {"S": case.status_at},
        "opened_at": {"S": case.opened_at},
        "user_id": {"S": d.user_id},
        "merchant_id": {"S": d.merchant_id},
        "decision_kind": {"S": d.decision.value},
        "score": {"N": repr(d.score)},
        "rule_reasons": {"L": [{"S": code} for code in d.rule_reasons]},
        "reason_features": {"L": [{"S": feature} for feature in case.reason_features]},
        "decision": {"S": json.dumps(d.to_dict())},
        "recent": {"S": json.dumps([r._asdict() for r in case.recent])},
        "history": {"S": json.dumps([e._asdict() for e in case.history])},
        "verdict_reason": {"S": case.verdict_reason},
        "version": {"N": str(case.version)},
    }
    optional = {
        "assignee": case.assignee,
        "verdict": None if case.verdict is None else case.verdict.value,
        "closed_at": case.closed_at,
        "closed_by": case.closed_by,
    }
    item.update({name: {"S": value} for name, value in optional.items() if value is not None})
    return item


def case_of(item: Item) -> Case:
    """A stored item back as the case (`case_item`'s inverse)."""

    def text(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    return Case(
        decision=decision_from_alert(json.loads(item["decision"]["S"])),
        opened_at=item["opened_at"]["S"],
        recent=tuple(RecentDecision(**r) for r in json.loads(item["recent"]["S"])),
        status=CaseStatus(item["status"]["S"]),
        assignee=text("assignee"),
        verdict=None if "verdict" not in item else Verdict(item["verdict"]["S"]),
        verdict_reason=item.get("verdict_reason", {}).get("S", ""),
        closed_at=text("closed_at"),
        closed_by=text("closed_by"),
        history=tuple(CaseEvent(**e) for e in json.loads(item["history"]["S"])),
        version=int(item["version"]["N"]),
    )


INDEX_KEYS = {
    BY_STATUS: ("status", "status_at"),
    BY_ASSIGNEE: ("assignee", "status_at"),
    BY_USER: ("user_id", "opened_at"),
}
"""Each index's hash and range key (template.yaml); a page's cursor holds them and the table's key."""


def _index_of(where: QueueFilter) -> tuple[str, str, str]:
    """The index a filter reads, its hash key and the value wanted: an analyst's, a user's, or a status's."""
    if where.assignee is not None:
        return BY_ASSIGNEE, "assignee", where.assignee
    if where.user is not None:
        return BY_USER, "user_id", where.user
    return BY_STATUS, "status", where.status.value


def _cursor(last: Case, index: str) -> str:
    item = case_item(last)
    values = [index, last.case_id, *(item[key]["S"] for key in INDEX_KEYS[index])]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _start_key(cursor: str, index: str) -> Item:
    """The index key a cursor stands for; InvalidRecordError for one not made here for this index."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise InvalidRecordError("cursor", "not a cursor this API returned") from exc
    if (
        not isinstance(values, list)
        or len(values) != 4
        or not all(isinstance(v, str) and v for v in values)
        or values[0] != index
    ):
        raise InvalidRecordError("cursor", "not a cursor this API returned for these cases")
    names = ("case_id", *INDEX_KEYS[index])
    return {name: {"S": value} for name, value in zip(names, values[1:], strict=True)}
