"""The backtest's figures (`fraudwatch backtest`, see `training.backtest`).

Figures a fraud team reads off a backtest: ranking quality (ROC AUC, average precision), what an alert
budget of 1 % of legitimate transactions catches (recall and precision at 1 % false-positive rate,
overall and per fraud pattern), and how many of the day's top-k cards an analyst queue would have
found fraudulent (daily top-k precision per card). Each is computed for the model with merchant risk
and, when comparing, for the same model trained without it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudwatch.domain.features import DAY
from training.evaluate import without_nan

FALSE_POSITIVE_RATE = 0.01


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
    """One UTC day's top-k cards: how many cards paid that day (not yet detected), and the top k's share
    with a fraud."""

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
        """The daily top-k precision averaged over the test period's days that had cards left to rank."""
        ranked = [d.precision for d in self.daily_top_k if d.cards]
        return float(np.mean(ranked)) if ranked else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as None)."""
        return without_nan({**asdict(self), "mean_top_k_precision": self.mean_top_k_precision})  # type: ignore[no-any-return]


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

    A card counts as fraudulent on a day when any of its transactions that day is fraud. A card found
    fraudulent in an earlier day's top k is blocked by then, so it leaves the later days' rankings (the
    textbook's card precision top-k). Ties in the highest score are broken by card id, so the figure is
    deterministic; a day with fewer than k cards left divides by the cards it has.
    """
    frame = pd.DataFrame(
        {"day": np.floor(epochs / DAY).astype(np.int64), "card": cards, "score": scores, "fraud": labels}
    )
    per_card = frame.groupby(["day", "card"], sort=False).agg(score=("score", "max"), fraud=("fraud", "any"))
    ranked = per_card.reset_index().sort_values(["day", "score", "card"], ascending=[True, False, True])
    detected: set[object] = set()
    out = []
    for day, cards_of_day in ranked.groupby("day", sort=True):
        left = cards_of_day[~cards_of_day["card"].isin(detected)]
        top = left.head(k)
        detected.update(top.loc[top["fraud"], "card"].tolist())
        precision = float(top["fraud"].mean()) if len(top) else math.nan
        out.append(DayTopK(_day(int(str(day))), len(left), precision))
    return tuple(out)


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
