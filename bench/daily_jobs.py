"""The daily jobs' reads and count: what the activity and matured runs read of the decisions table, and the
count's CPU and memory a payment, beside the way before (a Scan of the whole table for each run; every
payment listed, then counted day by day).

Reads: the real adapters on moto, the decisions table with template.yaml's indexes, filled with
`--days` days of `--per-day` decisions (1 % labelled). moto does not bill: the bytes each way examines
are summed from the items (DynamoDB's item size, approximately: names and values as text), and the read
units follow from DynamoDB's rule (4 KB a unit, half for eventually consistent reads), then scaled to a
million decisions a day. Count: `count_days` on synthetic payments (a card pays about every other day,
at its own few merchants), each payment's strings new objects as a page's parse makes them; peak memory
by tracemalloc, CPU by process time, in separate passes.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from bench._common import machine, table
from bench.aws_calls import FAKE_ENV, REGION, table_definitions
from fraudwatch.domain.activity import MerchantActivity, count_days, days_to_count
from fraudwatch.domain.decision import Decision, DecisionRecord, Reason, Thresholds
from fraudwatch.domain.features import DAY, NEW_CARD_DAYS, day_activity

TABLE = "bench-decisions"
SCALE = 1_000_000
"""Decisions a day the read units are scaled to."""
RECOUNT = 7
MATURED_DAYS = 7
LABEL_DELAY_DAYS = 7
KEPT_DAYS = 90
REASONS = (
    Reason("amount_zscore", 0.41, -0.52),
    Reason("velocity_24h", 3.0, 0.18),
    Reason("merchant_risk", None, 0.07),
)
"""A decision's top three reasons, as every stored decision has them."""
"""Days the decisions table keeps (DECISION_TTL_DAYS)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    print("The daily jobs: what they read of the decisions table, and the count's CPU and memory")
    print(f"machine: {machine()}")
    print(
        f"reads:   moto, {args.days} days x {args.per_day:,} decisions, 1 % labelled; "
        f"scaled to {SCALE:,} a day"
    )
    print(f"count:   {args.count_per_day:,} payments a day x {RECOUNT + NEW_CARD_DAYS} days, synthetic\n")
    _reads(args.days, args.per_day)
    print()
    _count(args.count_per_day)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--days", type=int, default=KEPT_DAYS, help=f"days of decisions stored (default {KEPT_DAYS})"
    )
    parser.add_argument(
        "--per-day", type=int, default=100, help="decisions a day stored on moto (default 100)"
    )
    parser.add_argument(
        "--count-per-day", type=int, default=50_000, help="payments a day counted (default 50,000)"
    )
    return parser


# ---------------------------------------------------------------- reads, on moto


def _reads(days: int, per_day: int) -> None:
    import boto3
    from moto import mock_aws

    from fraudwatch.adapters.dynamodb import DynamoDecisionStore, decision_item

    os.environ.update(FAKE_ENV)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with mock_aws():
        client: Any = boto3.client("dynamodb", region_name=REGION)
        props = table_definitions()["DecisionsTable"]
        client.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            **{k: props[k] for k in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")},
        )
        today = int(time.time() // DAY)
        decisions = _decisions(today - days, days, per_day)
        store = DynamoDecisionStore(TABLE, client)
        store.put_many(decisions)
        full = sum(_bytes(decision_item(d)) for d in decisions)
        stored = len(decisions)
        labelled = [d.transaction_id for i, d in enumerate(decisions) if i % 100 == 0]

        # activity: the 7 days ending yesterday and the 30 before them
        counted = days_to_count(today - 1, RECOUNT)
        first = counted[0] - NEW_CARD_DAYS
        before_items, before_returned = _scan(
            client,
            FilterExpression="decided_at >= :from",
            ExpressionAttributeValues={":from": {"S": _iso(first * DAY)}},
            ProjectionExpression="merchant_id, user_id, transaction_time",
        )
        read = list(store.payments_on(range(first, counted[-1] + 1)))
        index_bytes = sum(_index_bytes(d) for d in decisions if first <= _day(d) <= counted[-1])
        # matured: the 7 days whose labels are 7 days old; before, every decision decided in them and the
        # 7 days after; now, the labelled ones by key
        end = (today - LABEL_DELAY_DAYS) * DAY
        start = end - MATURED_DAYS * DAY
        matured_items, matured_returned = _scan(
            client,
            FilterExpression="decided_at >= :since AND decided_at < :until",
            ExpressionAttributeValues={
                ":since": {"S": _iso(start - 3600)},
                ":until": {"S": _iso(end + 7 * DAY)},
            },
        )
        in_window = {d.transaction_id for d in decisions if start <= _epoch(d) < end}
        wanted = [t for t in labelled if t in in_window]
        got = list(store.get_many(wanted))
        assert len(got) == len(wanted)

    per_decision = full / stored
    rows = [
        (
            "activity, before: Scan (consistent)",
            f"{before_items:,}",
            f"{before_returned:,}",
            _mb(before_items * per_decision),
            _units(before_items * per_decision, per_day, consistent=True),
        ),
        (
            "activity, now: Query by-payment-day",
            f"{len(read):,}",
            f"{len(read):,}",
            _mb(index_bytes),
            _units(index_bytes, per_day, consistent=False),
        ),
        (
            "matured, before: Scan",
            f"{matured_items:,}",
            f"{matured_returned:,}",
            _mb(matured_items * per_decision),
            _units(matured_items * per_decision, per_day, consistent=False),
        ),
        (
            "matured, now: BatchGetItem of the labelled",
            f"{len(got):,}",
            f"{len(got):,}",
            _mb(len(got) * per_decision),
            _units(len(got) * 4096, per_day, consistent=False),  # a unit an item under 4 KB
        ),
    ]
    print(
        f"Reads of one run ({stored:,} decisions stored, {per_decision:,.0f} bytes each; the labels' Scan is"
    )
    print("the same both ways and left out)")
    print(
        table(
            ("way", "items examined", "items returned", "MB examined", f"read units at {SCALE:,}/day"), rows
        )
    )


def _decisions(first_day: int, days: int, per_day: int) -> list[DecisionRecord]:
    rng = random.Random(7)
    decisions = []
    for n in range(days * per_day):
        made = (first_day + n // per_day) * DAY + rng.uniform(0, DAY)
        decided = made + rng.choice((1.0, 1.0, 1.0, 3 * DAY))  # some decided days late
        decisions.append(
            DecisionRecord(
                f"tx-{n:09d}", f"user-{rng.randrange(per_day * 2)}", f"merch-{rng.randrange(300)}",
                round(rng.uniform(1, 500), 2), "EUR", _iso(made), Decision.APPROVED, 0.0123456,
                "20261206-095305-fde2a7c7", Thresholds(0.5, 0.9), _iso(decided), REASONS,
            )
        )  # fmt: skip
    return decisions


def _scan(client: Any, **kwargs: Any) -> tuple[int, int]:
    """A paginated Scan (the way before): items examined, items returned."""
    examined = returned = 0
    for page in client.get_paginator("scan").paginate(TableName=TABLE, **kwargs):
        examined += page["ScannedCount"]
        returned += page["Count"]
    return examined, returned


def _bytes(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item, approximately: each name, and each value as text."""
    return sum(len(name) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: dict[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "L":
        return 3 + sum(_value_bytes(v) for v in inner)
    if kind == "M":
        return 3 + _bytes(inner)
    return len(str(inner))


def _index_bytes(d: DecisionRecord) -> int:
    """An index item: its keys (paid_day, transaction_id) and the merchant and card."""
    return (
        len("paid_day")
        + 6
        + len("transaction_id")
        + len(d.transaction_id)
        + len("merchant_id")
        + len(d.merchant_id)
        + len("user_id")
        + len(d.user_id)
    )


def _units(examined_bytes: float, per_day: int, *, consistent: bool) -> str:
    units = examined_bytes / 4096 * (1.0 if consistent else 0.5)
    return f"{units * SCALE / per_day:,.0f}"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _epoch(d: DecisionRecord) -> float:
    return datetime.fromisoformat(d.transaction_time).timestamp()


def _day(d: DecisionRecord) -> int:
    return int(_epoch(d) // DAY)


# ---------------------------------------------------------------- the count


def _count(per_day: int) -> None:
    last = 20_790
    counted = days_to_count(last, RECOUNT)
    days = RECOUNT + NEW_CARD_DAYS
    payments = days * per_day

    def source() -> Iterator[tuple[str, str, int]]:
        return _payments(last - days + 1, days, per_day)

    ways: list[tuple[str, Callable[[Iterable[tuple[str, str, int]]], list[MerchantActivity]]]] = [
        ("before: every payment listed, each day counted over all", lambda p: _listed(p, counted)),
        ("now: count_days, a pass, cards by merchant and day", lambda p: count_days(p, counted)),
    ]
    results, rows = [], []
    for name, way in ways:
        started = time.process_time()
        results.append(way(source()))
        cpu = time.process_time() - started
        tracemalloc.start()
        way(source())
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append(
            (
                name,
                f"{cpu:,.1f}",
                f"{cpu / payments * 1e6:,.2f}",
                f"{peak / 1e6:,.0f}",
                f"{peak / payments:,.0f}",
            )
        )
    assert results[0] == results[1], "the two ways counted differently"
    print(
        f"The count: {payments:,} payments read, {len(results[1]):,} merchant-days counted (equal both ways)"
    )
    print(table(("way", "CPU s", "CPU us/payment", "peak MB", "bytes/payment"), rows))


def _payments(first: int, days: int, per_day: int) -> Iterator[tuple[str, str, int]]:
    """Payments as a page's parse yields them (new strings each): a card pays about every other day, at
    one of its own three merchants."""
    rng = random.Random(11)
    cards = per_day * 2
    for day in range(first, first + days):
        for _ in range(per_day):
            card = rng.randrange(cards)
            merchant = (card * 7 + rng.randrange(3) * 1_009) % max(cards // 20, 1)
            yield f"merch-{merchant}", f"user-{card:08d}", day


def _listed(payments: Iterable[tuple[str, str, int]], days: Sequence[int]) -> list[MerchantActivity]:
    """The count before: every payment in a list, then each day counted over all of them."""
    wanted = list(payments)
    found = []
    for day in days:
        by_merchant: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for merchant_id, card, paid_on in wanted:
            if day - NEW_CARD_DAYS <= paid_on <= day:
                by_merchant[merchant_id].append((paid_on, card))
        for merchant_id, paid in sorted(by_merchant.items()):
            today = [card for paid_on, card in paid if paid_on == day]
            if not today:
                continue
            last_seen: dict[str, int] = {}
            for paid_on, card in paid:
                if paid_on < day and last_seen.get(card, paid_on) <= paid_on:
                    last_seen[card] = paid_on
            found.append(MerchantActivity(merchant_id, day, *day_activity(today, last_seen, day)))
    return found


if __name__ == "__main__":
    raise SystemExit(main())
