"""`fraudwatch rules test FILE --history FILE`: a rules document replayed on a labelled history.

The history is replayed as `fraudwatch score-file` replays it (training.features.compute_features, the
Lambda's own profile updates and features, labels fed back late; training.score.score_rows, the
model adapter's scores), and each transaction is then judged by the rules and lists as the Lambda
judges it (domain/controls.py). The report puts, per rule and list, how often it fires, its precision
and recall, the frauds it adds (that the model alone approved), the genuine payments it blocks (that
the model alone did not reject) and the frauds an allow lets through; and the decision mix of the
model alone beside the model with the rules.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraudwatch.domain.controls import Controls, Judgement
from fraudwatch.domain.decision import Decision
from fraudwatch.domain.lists import Action, ListSnapshot, list_action
from fraudwatch.domain.rules import RuleSet
from fraudwatch.domain.transaction import Transaction


@dataclass
class RuleOutcome:
    """What one rule or list did over the history."""

    code: str
    action: Action
    fires: int = 0
    frauds: int = 0
    frauds_added: int = 0
    genuine_blocked: int = 0
    frauds_allowed: int = 0

    def precision(self) -> float | None:
        """Frauds among the payments it fired on (None: it never fired)."""
        return self.frauds / self.fires if self.fires else None


@dataclass
class HistoryReport:
    """The rules document's outcomes on a history, beside the model alone."""

    transactions: int
    frauds: int
    rules: dict[str, RuleOutcome]
    model: Counter[Decision] = field(default_factory=Counter)
    with_rules: Counter[Decision] = field(default_factory=Counter)
    caught: dict[str, int] = field(default_factory=dict)
    """Frauds not approved, by "model" and "with rules"."""
    genuine_rejected: dict[str, int] = field(default_factory=dict)

    def to_markdown(self, version: str) -> str:
        """The per-rule table and the decision mix, side by side."""
        lines = [
            f"Rules {version} on {self.transactions:,} transactions ({self.frauds:,} frauds)",
            "",
            "| rule or list | action | fires | precision | recall | frauds added | genuine blocked "
            "| frauds allowed |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for o in self.rules.values():
            recall = o.frauds / self.frauds if self.frauds else None
            lines.append(
                f"| {o.code} | {o.action.value} | {o.fires:,} | {_pct(o.precision())} | {_pct(recall)} "
                f"| {o.frauds_added:,} | {o.genuine_blocked:,} | {o.frauds_allowed:,} |"
            )
        genuine = self.transactions - self.frauds
        lines += ["", "| decisions | model alone | with the rules |", "| --- | ---: | ---: |"]
        for decision in Decision:
            lines.append(f"| {decision.value} | {self.model[decision]:,} | {self.with_rules[decision]:,} |")
        model, ruled = self.caught["model"], self.caught["rules"]
        lines.append(
            f"| frauds caught (flagged or rejected) | {model:,} ({_pct(_ratio(model, self.frauds))}) "
            f"| {ruled:,} ({_pct(_ratio(ruled, self.frauds))}) |"
        )
        model, ruled = self.genuine_rejected["model"], self.genuine_rejected["rules"]
        lines.append(
            f"| genuine payments rejected | {model:,} ({_pct(_ratio(model, genuine))}) "
            f"| {ruled:,} ({_pct(_ratio(ruled, genuine))}) |"
        )
        return "\n".join(lines)


def replay(
    frame: Any, model: Any, controls: Controls, *, label_delay: float, progress: bool = False
) -> HistoryReport:
    """Replay a labelled history through the features and the model, then judge it with `controls`."""
    from training.features import compute_features
    from training.io import LABEL
    from training.score import score_rows

    matrix = compute_features(
        frame, source="history", check=False, label_delay=label_delay, progress=progress
    )
    order = matrix.order
    rows = matrix.values[order]
    scores = score_rows(model, rows, progress).tolist()
    ids, users, merchants, amounts, currencies, times, categories = (
        frame[name].to_numpy()[order].tolist() for name in _CONTRACT
    )
    frauds = frame[LABEL].to_numpy()[order].astype(bool).tolist()
    epochs = matrix.epochs[order].tolist()
    transactions = [
        Transaction(
            ids[i],
            users[i],
            merchants[i],
            float(amounts[i]),
            currencies[i],
            times[i],
            categories[i],
            epoch,
            0,
        )
        for i, epoch in enumerate(epochs)
    ]
    verdicts = [model.thresholds.decide(score) for score in scores]
    report = HistoryReport(len(scores), sum(frauds), _outcomes(controls))
    caught = Counter[str]()
    rejected = Counter[str]()
    for start in range(0, len(scores), JUDGED_AT_ONCE):
        end = start + JUDGED_AT_ONCE
        judgements = controls.judge_many(
            transactions[start:end], rows[start:end], scores[start:end], verdicts[start:end]
        )
        for i, judged in enumerate(judgements, start):
            _tally(report, caught, rejected, judged, verdicts[i], frauds[i])
    report.caught, report.genuine_rejected = dict(caught), dict(rejected)
    return report


JUDGED_AT_ONCE = 8192
"""Transactions whose rules are evaluated together (domain/conditions.py): a few MB of columns."""


def _tally(
    report: HistoryReport,
    caught: Counter[str],
    rejected: Counter[str],
    judged: Judgement,
    alone: Decision,
    fraud: bool,
) -> None:
    """Count one transaction's decisions, the model's alone and with the rules."""
    report.model[alone] += 1
    report.with_rules[judged.decision] += 1
    caught["model"] += fraud and alone is not Decision.APPROVED
    caught["rules"] += fraud and judged.decision is not Decision.APPROVED
    rejected["model"] += not fraud and alone is Decision.REJECTED
    rejected["rules"] += not fraud and judged.decision is Decision.REJECTED
    for code in judged.matched:
        _count(report.rules[code], fraud, alone)


_CONTRACT = ("transaction_id", "user_id", "merchant_id", "amount", "currency", "timestamp", "category")


def _outcomes(controls: Controls) -> dict[str, RuleOutcome]:
    outcomes = {rule.code: RuleOutcome(rule.code, rule.action) for rule in controls.rules.enabled}
    for name in sorted(controls.lists.values):
        if (action := list_action(name)) is not None:
            outcomes[f"list:{name}"] = RuleOutcome(f"list:{name}", action)
    return outcomes


def _count(outcome: RuleOutcome, fraud: bool, alone: Decision) -> None:
    outcome.fires += 1
    outcome.frauds += fraud
    if outcome.action is Action.ALLOW:
        outcome.frauds_allowed += fraud and alone is not Decision.APPROVED
    else:
        outcome.frauds_added += fraud and alone is Decision.APPROVED
    if outcome.action is Action.BLOCK:
        outcome.genuine_blocked += not fraud and alone is not Decision.REJECTED


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def rules_on_history(
    rules: RuleSet,
    history: Path,
    *,
    bundle: Path,
    lists: ListSnapshot | None = None,
    label_delay: float,
    progress: bool = False,
) -> HistoryReport:
    """Read the history and the model bundle, and replay (the command's work, for `rules test` and `push`)."""
    from fraudwatch.adapters.model import load_model
    from training.io import read_transactions

    frame = read_transactions(history, labelled=True)
    controls = Controls(rules, lists or ListSnapshot({}))
    return replay(frame, load_model(bundle), controls, label_delay=label_delay, progress=progress)
