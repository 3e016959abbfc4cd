"""The backtest's figures, report and plots (`fraudwatch backtest`, see `training.backtest`).

Figures a fraud team reads off a backtest: ranking quality (ROC AUC, average precision), what an alert
budget of 1 % of legitimate transactions catches (recall and precision at 1 % false-positive rate,
overall and per fraud pattern), and how many of the day's top-k cards an analyst queue would have
found fraudulent (daily top-k precision per card). Each is computed for the model with merchant risk
and, when comparing, for the same model trained without it, and shown side by side.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from training.evaluate import Evaluation, _defined, _save

FALSE_POSITIVE_RATE = 0.01
DAY = 86400.0
PLOTS = ("roc_curve.png", "pr_curve.png", "daily_top_k.png")
WITH, WITHOUT = "with_merchant_risk", "without_merchant_risk"
TITLES = {WITH: "with merchant risk", WITHOUT: "without merchant risk"}


@dataclass(frozen=True, slots=True)
class AtFalsePositiveRate:
    """Alerting at the lowest score whose share of legitimate transactions alerted stays within a rate."""

    threshold: float
    false_positive_rate: float
    """As achieved: at most the target (ties in the scores can keep it below)."""
    recall: float
    precision: float
    """NaN when nothing is alerted."""
    alerts: int


@dataclass(frozen=True, slots=True)
class DayTopK:
    """One UTC day's top-k cards: how many cards paid that day, and the share of the top k with a fraud."""

    day: str
    cards: int
    precision: float


@dataclass(frozen=True, slots=True)
class Figures:
    """One model's figures on the test period."""

    roc_auc: float
    average_precision: float
    at_fpr: AtFalsePositiveRate
    pattern_recall: dict[str, float]
    """Recall at the 1 % FPR threshold per fraud pattern (empty without `fraud_pattern`)."""
    top_k: int
    daily_top_k: tuple[DayTopK, ...]

    @property
    def mean_top_k_precision(self) -> float:
        """The daily top-k precision averaged over the test period's days."""
        return float(np.mean([d.precision for d in self.daily_top_k])) if self.daily_top_k else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as None)."""
        return _defined({**asdict(self), "mean_top_k_precision": self.mean_top_k_precision})  # type: ignore[no-any-return]


def at_false_positive_rate(
    scores: np.ndarray, labels: np.ndarray, rate: float = FALSE_POSITIVE_RATE
) -> AtFalsePositiveRate:
    """Alert on score >= t, with t the lowest score at which at most `rate` of the negatives are alerted.

    The threshold comes from the negatives' own scores: each distinct negative score is a candidate,
    alerting it and everything above; when even the highest alerts too many, t lies just above it.
    """
    negatives = np.sort(scores[~labels])
    if len(negatives) == 0 or not labels.any():
        raise ValueError("recall at a false-positive rate needs both fraud and legitimate transactions")
    allowed = math.floor(rate * len(negatives) + 1e-9)
    candidates = np.unique(negatives)
    alerted = len(negatives) - np.searchsorted(negatives, candidates, side="left")
    within = np.flatnonzero(alerted <= allowed)
    threshold = float(candidates[within[0]]) if len(within) else float(np.nextafter(negatives[-1], np.inf))
    hit = scores >= threshold
    caught, false = int((hit & labels).sum()), int((hit & ~labels).sum())
    return AtFalsePositiveRate(
        threshold=threshold,
        false_positive_rate=false / len(negatives),
        recall=caught / int(labels.sum()),
        precision=caught / (caught + false) if caught + false else math.nan,
        alerts=caught + false,
    )


def daily_top_k(
    scores: np.ndarray, labels: np.ndarray, epochs: np.ndarray, cards: np.ndarray, k: int
) -> tuple[DayTopK, ...]:
    """Per UTC day: rank the cards by their highest score that day, and take the top k's share with a fraud.

    A card counts as fraudulent on a day when any of its transactions that day is fraud. Ties in the
    highest score are broken by card id, so the figure is deterministic; a day with fewer than k cards
    divides by the cards it has.
    """
    frame = pd.DataFrame(
        {"day": np.floor(epochs / DAY).astype(np.int64), "card": cards, "score": scores, "fraud": labels}
    )
    per_card = frame.groupby(["day", "card"], sort=False).agg(score=("score", "max"), fraud=("fraud", "any"))
    ranked = per_card.reset_index().sort_values(["day", "score", "card"], ascending=[True, False, True])
    top = ranked.groupby("day", sort=True).head(k).groupby("day", sort=True)["fraud"].mean()
    cards_per_day = per_card.groupby(level="day").size().reindex(top.index)
    return tuple(
        DayTopK(_day(day), cards, precision)
        for day, cards, precision in zip(
            top.index.tolist(), cards_per_day.tolist(), top.tolist(), strict=True
        )
    )


def figures(
    scores: np.ndarray,
    labels: np.ndarray,
    patterns: np.ndarray | None,
    epochs: np.ndarray,
    cards: np.ndarray,
    top_k: int,
) -> Figures:
    """Every figure of one model's test-period scores."""
    at_fpr = at_false_positive_rate(scores, labels)
    pattern_recall = {}
    if patterns is not None:
        for pattern in sorted(set(patterns[labels].tolist())):
            mask = labels & (patterns == pattern)
            pattern_recall[str(pattern)] = float((scores[mask] >= at_fpr.threshold).mean())
    return Figures(
        roc_auc=float(roc_auc_score(labels, scores)),
        average_precision=float(average_precision_score(labels, scores)),
        at_fpr=at_fpr,
        pattern_recall=pattern_recall,
        top_k=top_k,
        daily_top_k=daily_top_k(scores, labels, epochs, cards, top_k),
    )


def _day(day: int) -> str:
    """A day number (days since 1970-01-01, UTC) as YYYY-MM-DD."""
    return pd.Timestamp(day * DAY, unit="s", tz="UTC").strftime("%Y-%m-%d")


def write_report(
    directory: Path,
    *,
    metrics: dict[str, Any],
    results: dict[str, Figures],
    evaluation: Evaluation,
    scores: dict[str, np.ndarray],
    labels: np.ndarray,
) -> None:
    """metrics.json, report.md and the plots, into `directory` (which exists)."""
    (directory / "metrics.json").write_text(json.dumps(_defined(metrics), indent=2, allow_nan=False) + "\n")
    (directory / "report.md").write_text(render_report(metrics, results, evaluation))
    _plots(directory, results, scores, labels)


def render_report(metrics: dict[str, Any], results: dict[str, Figures], evaluation: Evaluation) -> str:
    """The Markdown report: periods, replay speed, the models side by side, the bundle's decisions."""
    data, replay, model = metrics["data"], metrics["replay"], metrics["model"]
    names = list(results)
    main = results[WITH]
    k = main.top_k
    header = (
        "| metric | " + " | ".join(TITLES[n] for n in names) + (" | change |" if len(names) > 1 else " |")
    )
    rule = "| --- " * (len(names) + 1 + (len(names) > 1)) + "|"
    rows: list[tuple[str, Callable[[Figures], float], str]] = [
        ("ROC AUC", lambda f: f.roc_auc, "{:.4f}"),
        ("average precision", lambda f: f.average_precision, "{:.4f}"),
        ("recall at 1% FPR", lambda f: f.at_fpr.recall, "{:.1%}"),
        ("precision at 1% FPR", lambda f: f.at_fpr.precision, "{:.1%}"),
        (f"daily top-{k} precision per card (mean)", lambda f: f.mean_top_k_precision, "{:.1%}"),
    ]
    lines = [
        "# Backtest",
        "",
        f"Source: {data['source']} ({data['rows']:,} transactions, {data['frauds']:,} fraud). "
        f"Labels fed back {data['label_delay_days']:g} days after each transaction.",
        "",
        "| period | from | to (exclusive) | transactions | fraud |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {name} | {p['start']} | {p['end']} | {p['rows']:,} | {p['frauds']:,} |"
            for name, p in metrics["periods"].items()
        ],
        "",
        "Training uses the training period only: its earliest 80% of transactions fit the model, the rest "
        "stop the boosting early and choose the thresholds. The gap is neither trained on nor scored.",
        "",
        f"Replay: {replay['transactions']:,} transactions through the Lambda's profile updates and "
        f"features in {replay['seconds']:.1f} s ({replay['tx_per_second']:,.0f} tx/s).",
        "",
        "## Side by side (test period)",
        "",
        header,
        rule,
        *[_side_by_side(label, [getter(results[n]) for n in names], form) for label, getter, form in rows],
        "",
        "The 1% FPR threshold is set on each model's own test-period negatives: "
        + ", ".join(f"{TITLES[n]} {results[n].at_fpr.threshold:.4f}" for n in names)
        + ".",
        "",
    ]
    if main.pattern_recall:
        lines += [
            "## Recall per fraud pattern at 1% FPR",
            "",
            "| pattern | fraud transactions | "
            + " | ".join(TITLES[n] for n in names)
            + (" | change |" if len(names) > 1 else " |"),
            "| --- " * (len(names) + 2 + (len(names) > 1)) + "|",
            *[
                _side_by_side(
                    f"{pattern} | {count:,}",
                    [results[n].pattern_recall.get(pattern, math.nan) for n in names],
                    "{:.1%}",
                )
                for pattern, count in metrics["test_frauds_by_pattern"].items()
            ],
            "",
        ]
    lines += [
        f"## Decisions of the bundle ({model['version']})",
        "",
        f"The model with merchant risk, written as a bundle and loaded by the Lambda's model adapter; "
        f"FLAGGED >= {model['flag']:.4f}, REJECTED >= {model['reject']:.4f} (chosen on validation).",
        "",
        "| decision | fraud | legitimate |",
        "| --- | --- | --- |",
        *[f"| {d} | {c['fraud']:,} | {c['legitimate']:,} |" for d, c in evaluation.confusion.items()],
        "",
        f"At FLAGGED: precision {_percent(evaluation.at_flag.precision)}, "
        f"recall {evaluation.at_flag.recall:.1%}; "
        f"at REJECTED: precision {_percent(evaluation.at_reject.precision)}, "
        f"recall {evaluation.at_reject.recall:.1%}.",
        "",
        "Share of the model's total gain from the merchant risk features: "
        + ", ".join(f"{name} {share:.1%}" for name, share in model["merchant_gain"].items())
        + ".",
        "",
        "## Plots",
        "",
        *[f"![{name}]({name})" for name in PLOTS],
        "",
    ]
    return "\n".join(lines)


def _side_by_side(label: str, values: list[float], form: str) -> str:
    cells = [_cell(value, form) for value in values]
    if len(values) > 1:
        change = values[0] - values[1]
        percent = form.endswith("%}")
        cells.append(
            "n/a" if math.isnan(change) else (f"{change * 100:+.1f} pts" if percent else f"{change:+.4f}")
        )
    return f"| {label} | " + " | ".join(cells) + " |"


def _cell(value: float, form: str) -> str:
    return "n/a" if math.isnan(value) else form.format(value)


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def _plots(
    directory: Path, results: dict[str, Figures], scores: dict[str, np.ndarray], labels: np.ndarray
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, figure in results.items():
        fpr, tpr, _ = roc_curve(labels, scores[name])
        ax.plot(fpr, tpr, label=f"{TITLES[name]}: AUC {figure.roc_auc:.4f}")
    ax.axvline(FALSE_POSITIVE_RATE, linestyle=":", color="grey", label="1% FPR")
    ax.set(xlabel="false positive rate (log)", ylabel="true positive rate", xscale="log", xlim=(1e-4, 1))
    ax.set(title="ROC (test period)")
    ax.legend(loc="lower right")
    _save(fig, directory / "roc_curve.png")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, figure in results.items():
        precision, recall, _ = precision_recall_curve(labels, scores[name])
        ax.plot(recall, precision, label=f"{TITLES[name]}: AP {figure.average_precision:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test period)", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    _save(fig, directory / "pr_curve.png")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, figure in results.items():
        days = np.array([d.day for d in figure.daily_top_k], dtype="datetime64[D]")
        ax.plot(
            days,
            [d.precision for d in figure.daily_top_k],
            marker="o",
            markersize=3,
            label=f"{TITLES[name]}: mean {figure.mean_top_k_precision:.1%}",
        )
    ax.set(ylabel=f"precision of the top {results[WITH].top_k} cards", ylim=(0, 1.02))
    ax.set(title="Daily top-k precision per card (test period)")
    ax.legend(loc="best")
    fig.autofmt_xdate()
    _save(fig, directory / "daily_top_k.png")
