"""The daily count of merchants' payments on moto: decisions in the template's table, records on a stream."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3

from fraudwatch.adapters.dynamodb import DynamoDecisionStore
from fraudwatch.domain.activity import (
    MerchantActivity,
    count_days,
    count_recent,
    payments_of,
)
from fraudwatch.domain.decision import Decision, DecisionRecord, Thresholds
from fraudwatch.domain.events import activity_records, parse_event
from fraudwatch.domain.features import DAY
from infra.invoke import LocalContext, load_handler
from infra.producer import produce

DAY0 = 20_790  # 2026-12-03


def decision(n: int, user: str, merchant: str, day: int, hour: int = 12) -> DecisionRecord:
    made = datetime.fromtimestamp(day * DAY + hour * 3600, UTC)
    return DecisionRecord(
        transaction_id=f"tx-{n}",
        user_id=user,
        merchant_id=merchant,
        amount=12.5,
        currency="EUR",
        transaction_time=made.isoformat(),
        decision=Decision.APPROVED,
        score=0.01,
        model_version="m-1",
        thresholds=Thresholds(0.5, 0.9),
        decided_at=made.isoformat(),
    )


def stream_records(stream: str) -> list[tuple[str, bytes]]:
    kinesis = boto3.client("kinesis")
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    got = kinesis.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"]
    return [(r["PartitionKey"], r["Data"]) for r in got]


def test_the_daily_count_reads_the_decisions_and_puts_a_record_per_merchant_and_day(stack: dict[str, Any]):
    decided = [
        decision(1, "u1", "m1", DAY0 - 40),  # too old to matter: before the 30 days of the first day counted
        decision(2, "u1", "m1", DAY0 - 10),  # u1 known to m1 from here
        decision(3, "u1", "m1", DAY0 - 1),
        decision(4, "u2", "m1", DAY0 - 1),
        decision(5, "u2", "m1", DAY0 - 1, hour=23),
        decision(6, "u3", "m2", DAY0),
        decision(7, "u3", "m2", DAY0 + 1),  # after the last day counted
    ]
    store = DynamoDecisionStore(stack["DecisionsTableName"])
    store.put_many(decided)
    read: list[int] = []

    def payments_on(days: Iterable[int]) -> Iterator[tuple[str, str, int]]:
        read.extend(days)
        return store.payments_on(days)

    activities = count_recent(payments_on, DAY0, 2)
    assert activities == [
        MerchantActivity("m1", DAY0 - 1, payments=3, cards=2, new_cards=1),
        MerchantActivity("m2", DAY0, payments=1, cards=1, new_cards=1),
    ]
    assert read == list(range(DAY0 - 31, DAY0 + 1))  # the days counted and the 30 before: no more
    # What the parity test counts from the service's decisions, the same way, day by day.
    everything = list(payments_of(decided))
    assert activities == [a for day in (DAY0 - 1, DAY0) for a in count_days(everything, [day])]

    produce(boto3.client("kinesis"), stack["StreamName"], activity_records(activities), progress=False)
    put = stream_records(stack["StreamName"])
    assert [key for key, _ in put] == ["m1", "m2"]  # keyed by merchant, as labels are
    arrival = (DAY0 + 1) * DAY + 300
    assert [parse_event(data, received_at=arrival) for _, data in put] == activities


def test_the_model_operations_functions_daily_job_counts_the_days_just_ended_onto_the_stream(
    stack: dict[str, Any], tiny_bundle, tmp_path, restore_environ
):
    DynamoDecisionStore(stack["DecisionsTableName"]).put_many(
        [
            decision(1, "u1", "m1", DAY0 - 8),  # u1 known to m1 before the 7 days counted
            decision(2, "u1", "m1", DAY0 - 7),  # the first day counted: u1 is not new there
            decision(3, "u2", "m1", DAY0 - 1),
            decision(4, "u3", "m2", DAY0),  # today: not ended, not counted
        ]
    )
    ops = load_handler(
        stack,
        bundle_dir=tiny_bundle,
        function="ModelOpsFunction",
        overrides={"MODEL_CACHE_DIR": str(tmp_path / "cache")},
    )
    at = datetime.fromtimestamp(DAY0 * DAY + 300, UTC).isoformat()  # 00:05, as its schedule

    result = ops({"job": "activity", "time": at}, LocalContext("ModelOpsFunction"))

    expected = [
        MerchantActivity("m1", DAY0 - 7, payments=1, cards=1, new_cards=0),
        MerchantActivity("m1", DAY0 - 1, payments=1, cards=1, new_cards=1),
    ]
    assert result == {"job": "activity", "records": 2, "days": [DAY0 - 7, DAY0 - 1]}
    put = stream_records(stack["StreamName"])
    assert [key for key, _ in put] == ["m1", "m1"]
    assert [parse_event(data, received_at=DAY0 * DAY + 300) for _, data in put] == expected
