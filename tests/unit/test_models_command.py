"""`fraudwatch models`' reports on stored decisions: the matured days' recall and precision, and the
champion against the challenger."""

import math
from datetime import UTC, datetime

from fraudwatch.domain.decision import Decision, DecisionRecord, ShadowVerdict, Thresholds
from infra.models import compare, matured_days

DAY = 86400
T0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # a Monday, midnight UTC


def decided(
    n: int, day: int, decision: Decision, score: float, challenger: ShadowVerdict | None = None
) -> DecisionRecord:
    at = datetime.fromtimestamp(T0 + day * DAY + 3600, UTC).isoformat()
    return DecisionRecord(
        f"tx-{n}", f"user-{n % 7}", "m", 10.0, "EUR", at,
        decision, score, "champ-1", Thresholds(0.5, 0.9), "2026-11-02T00:00:00+00:00", challenger=challenger,
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


def test_compare_reports_both_versions_side_by_side_on_matured_labels_and_the_decision_mix():
    decisions = []
    labels = {}
    for n in range(40):
        fraud = n % 4 == 0
        champion_score = 0.95 if fraud and n % 8 == 0 else 0.2  # catches half of the frauds
        challenger_score = 0.92 if fraud else 0.1  # catches them all
        shadow = ShadowVerdict("chall-2", challenger_score, Thresholds(0.5, 0.9).decide(challenger_score))
        decisions.append(
            decided(n, n % 3, Thresholds(0.5, 0.9).decide(champion_score), champion_score, shadow)
        )
        labels[f"tx-{n}"] = fraud
    report = compare(decisions, labels, matured_before=T0 + 30 * DAY)
    assert "## champion champ-1 vs challenger chall-2: 40 decisions" in report
    assert "| REJECTED | 5 (12.5%) | 10 (25.0%) |" in report
    assert "On 40 matured labels (10 fraud):" in report
    roc = next(line for line in report.splitlines() if line.startswith("| ROC AUC |"))
    champion_auc, challenger_auc = (float(cell) for cell in roc.split("|")[2:4])
    assert challenger_auc == 1.0
    assert champion_auc < challenger_auc


def test_compare_without_a_challenger_says_how_to_set_one():
    assert "fraudwatch models challenge" in compare(
        [decided(1, 0, Decision.APPROVED, 0.1)], {}, matured_before=T0
    )
