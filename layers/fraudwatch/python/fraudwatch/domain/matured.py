"""Matured labels: each UTC day's recall and precision of the live decisions, once its labels are back.

A day counts once every transaction of it is at least the label delay old (chargebacks take days to
come back: a younger day would read better than it is). Recall is the share of a day's labelled frauds
that were FLAGGED or REJECTED as decided (rules and lists included), precision the share of its
labelled alerts that were fraud. The verdict of a transaction is its latest label (`latest_verdicts`):
a label put again changes nothing, a changed verdict (genuine, then charged back) replaces the earlier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

from fraudwatch.domain.decision import DecisionRecord

DAY = 86400


class MaturedDay(NamedTuple):
    """One UTC day of decisions whose labels have matured: recall and precision at the live decisions
    (FLAGGED or REJECTED as decided, rules and lists included); NaN where undefined."""

    day: int
    """Epoch seconds of its midnight (UTC)."""
    labelled: int
    frauds: int
    alerts: int
    recall: float
    precision: float


class StoredLabel(NamedTuple):
    """A label as the labels store keeps it: the transaction, the verdict, when it became known."""

    transaction_id: str
    is_fraud: bool
    known_at: float


def matured_span(now: float, *, delay_days: float, days: int) -> tuple[int, int]:
    """[first, end) in epoch seconds: the last `days` whole UTC days whose every transaction is at least
    `delay_days` old at `now`."""
    end = int((now - delay_days * DAY) // DAY) * DAY
    return end - days * DAY, end


def latest_verdicts(labels: Iterable[StoredLabel]) -> dict[str, bool]:
    """Each transaction's verdict: its label known last; at the same instant, fraud (a chargeback)."""
    latest: dict[str, tuple[float, bool]] = {}
    for label in labels:
        seen = latest.get(label.transaction_id)
        if seen is None or (label.known_at, label.is_fraud) > seen:
            latest[label.transaction_id] = (label.known_at, label.is_fraud)
    return {transaction_id: fraud for transaction_id, (_, fraud) in latest.items()}


def matured_days(
    decisions: Iterable[DecisionRecord],
    labels: Mapping[str, bool],
    *,
    now: float,
    delay_days: float,
    days: int,
) -> list[MaturedDay]:
    """The last `days` UTC days whose every transaction is at least `delay_days` old, oldest first: their
    labelled decisions' recall and precision (days without a labelled decision are left out)."""
    first, end = matured_span(now, delay_days=delay_days, days=days)
    by_day: dict[int, list[tuple[bool, bool]]] = {}
    for d in decisions:
        day = int(datetime.fromisoformat(d.transaction_time).timestamp() // DAY) * DAY
        if first <= day < end and d.transaction_id in labels:
            by_day.setdefault(day, []).append((labels[d.transaction_id], d.is_alert))
    found = []
    for day in sorted(by_day):
        pairs = by_day[day]
        frauds = sum(fraud for fraud, _ in pairs)
        alerts = sum(alert for _, alert in pairs)
        caught = sum(fraud and alert for fraud, alert in pairs)
        found.append(
            MaturedDay(
                day,
                len(pairs),
                frauds,
                alerts,
                caught / frauds if frauds else float("nan"),
                caught / alerts if alerts else float("nan"),
            )
        )
    return found
