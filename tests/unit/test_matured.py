"""Matured labels (domain/matured.py): the days whose labels are back, their recall and precision, and a
transaction's verdict from the labels the stream brought."""

import math
from datetime import UTC, datetime

from fraudwatch.domain.decision import Decision, DecisionRecord, Thresholds
from fraudwatch.domain.matured import StoredLabel, latest_verdicts, matured_days, matured_span

DAY = 86400
T0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # a Monday, midnight UTC


def decided(n: int, day: int, decision: Decision, score: float) -> DecisionRecord:
    at = datetime.fromtimestamp(T0 + day * DAY + 3600, UTC).isoformat()
    return DecisionRecord(
        f"tx-{n}", f"user-{n % 7}", "m", 10.0, "EUR", at,
        decision, score, "champ-1", Thresholds(0.5, 0.9), "2026-11-02T00:00:00+00:00",
    )  # fmt: skip


def test_matured_days_are_those_older_than_the_label_delay_with_recall_and_precision_of_the_live_decisions():
    decisions = [
        decided(1, 0, Decision.REJECTED, 0.95),  # fraud caught
        decided(2, 0, Decision.APPROVED, 0.10),  # fraud missed
        decided(3, 0, Decision.FLAGGED, 0.60),  # genuine alerted
        decided(4, 0, Decision.APPROVED, 0.05),  # genuine
        decided(5, 1, Decision.APPROVED, 0.05),  # genuine, no fraud that day: recall undefined
        decided(6, 9, Decision.REJECTED, 0.99),  # too recent: its labels have not matured
        decided(7, 0, Decision.APPROVED, 0.01),  # unlabelled: not counted
    ]
    labels = {"tx-1": True, "tx-2": True, "tx-3": False, "tx-4": False, "tx-5": False, "tx-6": True}
    matured = matured_days(decisions, labels, now=T0 + 10 * DAY, delay_days=7, days=7)
    assert [(m.day - T0) / DAY for m in matured] == [0, 1]
    first, second = matured
    assert (first.labelled, first.frauds, first.alerts) == (4, 2, 2)
    assert (first.recall, first.precision) == (0.5, 0.5)
    assert math.isnan(second.recall)
    assert math.isnan(second.precision)


def test_the_matured_span_is_whole_utc_days_ending_before_the_label_delay():
    first, end = matured_span(T0 + 10 * DAY + 5, delay_days=7, days=3)
    assert ((first - T0) / DAY, (end - T0) / DAY) == (0, 3)  # days 0, 1 and 2; day 3 is not 7 days old yet


def test_a_label_put_again_changes_nothing_and_a_changed_verdict_is_the_latest_known():
    labels = [
        StoredLabel("tx-1", False, 100.0),  # confirmed genuine...
        StoredLabel("tx-1", True, 500.0),  # ...then charged back
        StoredLabel("tx-1", False, 100.0),  # the first label delivered again, after the chargeback
        StoredLabel("tx-2", True, 200.0),
        StoredLabel("tx-2", True, 200.0),  # put twice: the same verdict
        StoredLabel("tx-3", True, 300.0),
        StoredLabel("tx-3", False, 900.0),  # a chargeback reversed
    ]
    assert latest_verdicts(labels) == {"tx-1": True, "tx-2": True, "tx-3": False}
    assert latest_verdicts(reversed(labels)) == {"tx-1": True, "tx-2": True, "tx-3": False}  # any order


def test_two_verdicts_known_at_the_same_instant_count_as_fraud():
    assert latest_verdicts([StoredLabel("tx-1", True, 5.0), StoredLabel("tx-1", False, 5.0)]) == {
        "tx-1": True
    }
