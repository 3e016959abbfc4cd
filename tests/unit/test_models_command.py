"""`fraudwatch models compare`: the champion against the challenger on stored decisions."""

from datetime import UTC, datetime

from fraudwatch.domain.decision import Decision, DecisionRecord, ShadowVerdict, Thresholds
from infra.models import compare

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
