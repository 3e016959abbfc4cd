"""The backtest's outputs: the scores table, metrics.json, report.md and the plots.

Written into the staging directory that `training.backtest.run` then renames over --out; the figures
come from `training.backtest.metrics`, side by side for the models with and without merchant risk.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from fraudwatch.domain.features import DAY, MERCHANT_FEATURES
from training.backtest.metrics import FALSE_POSITIVE_RATE, Figures, figures
from training.backtest.periods import Periods, iso
from training.baseline import BASELINE, BASELINE_NOTE
from training.comparison import fraud_patterns, side_by_side
from training.evaluate import Evaluation, evaluate, importance, save_figure, without_nan
from training.features import FeatureMatrix
from training.io import LABEL, PATTERN, defaulted_columns, defaults_note
from training.score import write_table
from training.train import TimeSplit

if TYPE_CHECKING:
    from training.backtest.config import BacktestConfig

PLOTS = ("roc_curve.png", "pr_curve.png", "daily_top_k.png")
WITH, WITHOUT = "with_merchant_risk", "without_merchant_risk"
TITLES = {WITH: "with merchant risk", BASELINE: "baseline", WITHOUT: "without merchant risk"}


def write_outputs(
    staging: Path,
    *,
    frame: pd.DataFrame,
    matrix: FeatureMatrix,
    split: TimeSplit,
    periods: Periods,
    scores: np.ndarray,
    baseline: np.ndarray,
    without: np.ndarray | None,
    decisions: list[str],
    model: Any,
    thresholds: Any,
    booster: Any,
    source: str,
    config: BacktestConfig,
    replay_seconds: float,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """scores.<parquet|csv>, metrics.json, report.md and the plots; return the metrics.

    `model` is the loaded bundle that scored the test period; `thresholds` the choice it was written with.
    """
    test = split.test
    labels = frame[LABEL].to_numpy(dtype=bool)
    tested = frame.loc[test, ["transaction_id", "user_id", "merchant_id", "timestamp"]].reset_index(drop=True)
    tested["score"] = scores
    tested["decision"] = decisions
    tested[LABEL] = labels[test]
    patterns = None
    if PATTERN in frame.columns:
        patterns = frame[PATTERN].to_numpy(dtype=str)[test]
        tested[PATTERN] = patterns
    tested["score_baseline"] = baseline
    if without is not None:
        tested["score_without_merchant_risk"] = without
    write_table(tested, staging / ("scores.csv" if config.csv else "scores.parquet"))

    epochs, cards, y = matrix.epochs[test], frame["user_id"].to_numpy(dtype=str)[test], labels[test]
    results = {
        WITH: figures(scores, y, patterns, epochs, cards, config.top_k),
        BASELINE: figures(baseline, y, patterns, epochs, cards, config.top_k),
    }
    all_scores = {WITH: scores, BASELINE: baseline}
    if without is not None:
        results[WITHOUT] = figures(without, y, patterns, epochs, cards, config.top_k)
        all_scores[WITHOUT] = without
    # The bundle's decisions against truth, at its thresholds, from the adapter's scores.
    evaluation = evaluate(booster, scores, y, patterns, thresholds)
    gain = importance(booster)
    metrics: dict[str, Any] = {
        "data": {
            "source": source,
            "rows": len(frame),
            "frauds": int(labels.sum()),
            "label_delay_days": config.label_delay / DAY,
            "defaulted_columns": defaulted_columns(frame),
        },
        "periods": periods_table(periods, split, matrix.epochs, labels),
        "replay": {
            "transactions": len(frame),
            "seconds": replay_seconds,
            "tx_per_second": len(frame) / replay_seconds if replay_seconds > 0 else math.nan,
        },
        "model": {
            "version": model.version,
            "flag": model.thresholds.flag,
            "reject": model.thresholds.reject,
            "merchant_gain": {name: gain[name] for name in MERCHANT_FEATURES},
        },
        "test_frauds_by_pattern": fraud_patterns(y, patterns),
        "top_k": config.top_k,
        "false_positive_rate": FALSE_POSITIVE_RATE,
        "models": {name: figure.to_dict() for name, figure in results.items()},
        "decisions": {
            "confusion": evaluation.confusion,
            "at_flag": asdict(evaluation.at_flag),
            "at_reject": asdict(evaluation.at_reject),
        },
        "seed": config.seed,
        "seconds": seconds,
    }
    write_report(
        staging, metrics=metrics, results=results, evaluation=evaluation, scores=all_scores, labels=y
    )
    return metrics


def periods_table(
    periods: Periods, split: TimeSplit, epochs: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    """Each period's bounds, rows and frauds; the training period also as its fitting and validation parts."""
    bounds = periods.describe()
    first, last = float(epochs.min()), float(epochs.max())
    out = {}
    for name, (start, end) in bounds.items():
        mask = (epochs >= start) & (epochs < end)
        start = max(start, math.floor(first / DAY) * DAY)
        out[name] = _period(start, min(end, math.floor(last / DAY) * DAY + DAY), mask, labels)
    out["fitting"] = _period(periods.origin, split.validation_start, split.train, labels)
    out["validation"] = _period(split.validation_start, periods.train_end, split.validation, labels)
    # The warm-up is shown when the training starts after the file does.
    order = ("warm-up", "training", "fitting", "validation", "gap", "test")
    return {name: out[name] for name in order if name != "warm-up" or out[name]["rows"]}


def _period(start: float, end: float, mask: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    return {
        "start": iso(start),
        "end": iso(end),
        "rows": int(mask.sum()),
        "frauds": int(labels[mask].sum()),
    }


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
    (directory / "metrics.json").write_text(
        json.dumps(without_nan(metrics), indent=2, allow_nan=False) + "\n"
    )
    (directory / "report.md").write_text(render_report(metrics, results, evaluation))
    _plots(directory, results, scores, labels)


def render_report(metrics: dict[str, Any], results: dict[str, Figures], evaluation: Evaluation) -> str:
    """The Markdown report: periods, replay speed, the models side by side, the bundle's decisions."""
    data, replay, model = metrics["data"], metrics["replay"], metrics["model"]
    names = list(results)
    lines = [
        "# Backtest",
        "",
        f"Source: {data['source']} ({data['rows']:,} transactions, {data['frauds']:,} fraud). "
        f"Labels fed back {data['label_delay_days']:g} days after each transaction. "
        + defaults_note(data["defaulted_columns"]),
        "",
        "| period | from | to (exclusive) | transactions | fraud |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {name} | {p['start']} | {p['end']} | {p['rows']:,} | {p['frauds']:,} |"
            for name, p in metrics["periods"].items()
        ],
        "",
        "Training uses the training period only: its earliest 80% of transactions fit the model, the rest "
        "stop the boosting early and choose the thresholds. The warm-up (before the training start) and "
        "the gap are replayed, so the profiles know them, but neither trained on nor scored.",
        "",
        f"Replay: {replay['transactions']:,} transactions through the Lambda's profile updates and "
        f"features in {replay['seconds']:.1f} s ({replay['tx_per_second']:,.0f} tx/s).",
        "",
        "## Side by side (test period)",
        "",
        f"The baseline: {BASELINE_NOTE}",
        "",
        *side_by_side(results, TITLES, metrics["test_frauds_by_pattern"]),
        "The 1% FPR threshold is set on each model's own test-period negatives: "
        + ", ".join(f"{TITLES[n]} {results[n].at_fpr.threshold:.4f}" for n in names)
        + ".",
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
    save_figure(fig, directory / "roc_curve.png")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, figure in results.items():
        precision, recall, _ = precision_recall_curve(labels, scores[name])
        ax.plot(recall, precision, label=f"{TITLES[name]}: AP {figure.average_precision:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test period)", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    save_figure(fig, directory / "pr_curve.png")

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
    save_figure(fig, directory / "daily_top_k.png")
