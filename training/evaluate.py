"""Evaluation on the test period: metrics, decisions against truth, recall per fraud pattern, a report.

`evaluate` computes the figures (they also go into the model card); `write_report` writes
`report.md`, `metrics.json` and the PNG plots into one directory per model version.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from fraudwatch.domain.decision import Decision
from fraudwatch.domain.features import FEATURE_NAMES
from training.io import NO_PATTERN
from training.selection import selection_lines
from training.train import Operating, ThresholdChoice, TrainingError

GRID = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
"""Extra thresholds listed in the report besides the two chosen ones."""

PLOTS = ("pr_curve.png", "roc_curve.png", "score_distribution.png", "feature_importance.png")


@dataclass(frozen=True, slots=True)
class PatternRecall:
    """How much of one fraud pattern the thresholds catch."""

    pattern: str
    transactions: int
    flagged_or_rejected: float
    rejected: float


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The test period's figures."""

    transactions: int
    frauds: int
    roc_auc: float
    average_precision: float
    at_flag: Operating
    at_reject: Operating
    grid: tuple[Operating, ...]
    confusion: dict[str, dict[str, int]]
    """decision -> {"fraud": n, "legitimate": n}"""
    patterns: tuple[PatternRecall, ...]
    importance: dict[str, float]
    """Total gain per feature, as a share of the whole."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (an undefined figure, such as precision with no alerts, is None)."""
        return without_nan(asdict(self))  # type: ignore[no-any-return]


def without_nan(value: Any) -> Any:
    """The value with every NaN replaced by None, through dicts, lists and tuples."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_nan(item) for item in value]
    return value


def evaluate(
    booster: xgb.Booster,
    scores: np.ndarray,
    labels: np.ndarray,
    patterns: np.ndarray | None,
    thresholds: ThresholdChoice,
) -> Evaluation:
    """Figures of the test period's scores against the truth."""
    if labels.all() or not labels.any():
        raise TrainingError("the test period needs both fraud and legitimate transactions to be evaluated")
    flag, reject = thresholds.flag.threshold, thresholds.reject.threshold
    return Evaluation(
        transactions=len(labels),
        frauds=int(labels.sum()),
        roc_auc=float(roc_auc_score(labels, scores)),
        average_precision=float(average_precision_score(labels, scores)),
        at_flag=_at(scores, labels, flag),
        at_reject=_at(scores, labels, reject),
        grid=tuple(_at(scores, labels, t) for t in GRID),
        confusion=_confusion(scores, labels, flag, reject),
        patterns=_pattern_recall(scores, labels, patterns, flag, reject),
        importance=importance(booster),
    )


def importance(booster: xgb.Booster) -> dict[str, float]:
    """Each feature's total gain as a share of all gain (0 for a feature never split on)."""
    gain = {name: float(value) for name, value in booster.get_score(importance_type="total_gain").items()}  # type: ignore[arg-type]
    total = sum(gain.values()) or 1.0
    return {name: gain.get(name, 0.0) / total for name in FEATURE_NAMES}


def _at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> Operating:
    alerted = scores >= threshold
    alerts = int(alerted.sum())
    caught = int((alerted & labels).sum())
    return Operating(
        threshold=threshold,
        precision=caught / alerts if alerts else float("nan"),
        recall=caught / max(int(labels.sum()), 1),
        alert_share=alerts / len(scores),
        alerts=alerts,
    )


def _confusion(
    scores: np.ndarray, labels: np.ndarray, flag: float, reject: float
) -> dict[str, dict[str, int]]:
    rejected = scores >= reject
    flagged = (scores >= flag) & ~rejected
    approved = ~rejected & ~flagged
    return {
        decision.value: {"fraud": int((mask & labels).sum()), "legitimate": int((mask & ~labels).sum())}
        for decision, mask in (
            (Decision.APPROVED, approved),
            (Decision.FLAGGED, flagged),
            (Decision.REJECTED, rejected),
        )
    }


def _pattern_recall(
    scores: np.ndarray, labels: np.ndarray, patterns: np.ndarray | None, flag: float, reject: float
) -> tuple[PatternRecall, ...]:
    if patterns is None:
        patterns = np.where(labels, "fraud", NO_PATTERN)
    out = []
    for pattern in sorted(set(patterns[labels].tolist())):
        mask = labels & (patterns == pattern)
        count = int(mask.sum())
        out.append(
            PatternRecall(
                pattern=str(pattern),
                transactions=count,
                flagged_or_rejected=float((scores[mask] >= flag).mean()),
                rejected=float((scores[mask] >= reject).mean()),
            )
        )
    return tuple(out)


def write_report(
    directory: Path,
    *,
    version: str,
    evaluation: Evaluation,
    scores: np.ndarray,
    labels: np.ndarray,
    card: dict[str, Any],
    comparison: list[str],
) -> Path:
    """Write report.md, metrics.json and the plots into `directory`; return the report's path.

    `comparison` is the Markdown of the model beside the baseline (`training.comparison`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    _plots(directory, evaluation, scores, labels)
    (directory / "metrics.json").write_text(
        json.dumps(evaluation.to_dict(), indent=2, allow_nan=False) + "\n"
    )
    report = directory / "report.md"
    report.write_text(render_report(version, evaluation, card, comparison))
    return report


def render_report(version: str, evaluation: Evaluation, card: dict[str, Any], comparison: list[str]) -> str:
    """The Markdown report."""
    data, thresholds = card["data"], card["thresholds"]
    lines = [
        f"# Model {version}: evaluation on the test period",
        "",
        f"Trained {card['trained_at']} on {data['rows']:,} transactions "
        f"({data['fraud_rate']:.2%} fraud); split by time: {_periods(data['periods'])}.",
        "",
        "## Headline (test period)",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| transactions | {evaluation.transactions:,} ({evaluation.frauds:,} fraud) |",
        f"| ROC AUC | {evaluation.roc_auc:.4f} |",
        f"| average precision | {evaluation.average_precision:.4f} |",
        f"| FLAGGED threshold | {evaluation.at_flag.threshold:.4f} |",
        f"| REJECTED threshold | {evaluation.at_reject.threshold:.4f} |",
        "",
        "## Beside the baseline (test period)",
        "",
        *comparison,
        "## Thresholds",
        "",
        "Chosen on the validation period: " + thresholds["rule"],
        "",
        *[f"- note: {note}" for note in thresholds["notes"]],
        *([""] if thresholds["notes"] else []),
        "Precision and recall at each threshold (an alert is a score at or above it):",
        "",
        "| threshold | alerts | share of transactions | precision | recall |",
        "| --- | --- | --- | --- | --- |",
        _row("FLAGGED", evaluation.at_flag),
        _row("REJECTED", evaluation.at_reject),
        *[_row("", point) for point in evaluation.grid],
        "",
        "## Decisions against truth",
        "",
        "| decision | fraud | legitimate |",
        "| --- | --- | --- |",
        *[f"| {d} | {c['fraud']:,} | {c['legitimate']:,} |" for d, c in evaluation.confusion.items()],
        "",
        "## Recall per fraud pattern",
        "",
        "| pattern | fraud transactions | FLAGGED or REJECTED | REJECTED |",
        "| --- | --- | --- | --- |",
        *[
            f"| {p.pattern} | {p.transactions:,} | {p.flagged_or_rejected:.1%} | {p.rejected:.1%} |"
            for p in evaluation.patterns
        ],
        "",
        "## Model selection",
        "",
        *selection_lines(card["selection"]),
        "",
        "## Feature importance (share of total gain)",
        "",
        "| feature | gain share |",
        "| --- | --- |",
        *[
            f"| {name} | {share:.1%} |"
            for name, share in sorted(evaluation.importance.items(), key=lambda item: -item[1])
        ],
        "",
        "## Plots",
        "",
        *[f"![{name}]({name})" for name in PLOTS],
        "",
    ]
    return "\n".join(lines)


def _row(label: str, point: Operating) -> str:
    name = f"{point.threshold:.4f}" + (f" ({label})" if label else "")
    precision = "n/a" if np.isnan(point.precision) else f"{point.precision:.3f}"
    return f"| {name} | {point.alerts:,} | {point.alert_share:.3%} | {precision} | {point.recall:.3f} |"


def _periods(periods: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{name} {p['start']} to {p['end']} ({p['rows']:,} rows)" for name, p in periods.items())


def _plots(directory: Path, evaluation: Evaluation, scores: np.ndarray, labels: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    precision, recall, _ = precision_recall_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(recall, precision, label=f"AP {evaluation.average_precision:.3f}")
    for name, point in (("FLAGGED", evaluation.at_flag), ("REJECTED", evaluation.at_reject)):
        ax.scatter([point.recall], [point.precision], zorder=3, label=f"{name} >= {point.threshold:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test period)", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    save_figure(fig, directory / "pr_curve.png")

    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(fpr, tpr, label=f"AUC {evaluation.roc_auc:.4f}")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test period)")
    ax.legend(loc="lower right")
    save_figure(fig, directory / "roc_curve.png")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    bins = [i / 50 for i in range(51)]
    ax.hist(scores[~labels], bins=bins, alpha=0.6, density=True, label="legitimate")
    ax.hist(scores[labels], bins=bins, alpha=0.6, density=True, label="fraud")
    for name, point, color in (
        ("FLAGGED", evaluation.at_flag, "grey"),
        ("REJECTED", evaluation.at_reject, "black"),
    ):
        ax.axvline(point.threshold, linestyle="--", color=color, label=f"{name} >= {point.threshold:.3f}")
    ax.set(xlabel="score", ylabel="density (log)", yscale="log", title="Scores by class (test period)")
    ax.legend()
    save_figure(fig, directory / "score_distribution.png")

    ranked = sorted(evaluation.importance.items(), key=lambda item: item[1])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.barh([name for name, _ in ranked], [share for _, share in ranked])
    ax.set(xlabel="share of total gain", title="Feature importance")
    save_figure(fig, directory / "feature_importance.png")


def save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
