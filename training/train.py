"""Training: a time-based split, XGBoost with early stopping, the imbalance choice, and the thresholds.

Time, not chance, separates the sets: the model learns on the earliest period, stops early and gets
its thresholds on the next, and is judged on the latest, as it will be used.

Imbalance: fraud is about 1% of transactions. Three weightings of the positive class are trained,
none, sqrt(neg/pos) and neg/pos, and the one with the best validation average precision is kept (the
ranking is what thresholds act on; weighting shifts the scores, and thresholds are chosen after).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# XGBoost's OpenMP threads spin while they wait; on a busy 2-core machine the spinning takes the cores
# from the thread doing the work (measured on 700,000 rows: 438 ms a round instead of 131). Passive
# waiting has to be chosen before the OpenMP runtime loads, that is before xgboost is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import xgboost as xgb
from sklearn.metrics import average_precision_score
from tqdm import tqdm

from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.errors import FraudwatchError

TRAIN_SHARE = 0.70
VALIDATION_SHARE = 0.15
MAX_ROUNDS = 400
EARLY_STOPPING_ROUNDS = 20

BASE_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "aucpr",
    "tree_method": "hist",
    "nthread": 2,
    "max_depth": 6,
    "eta": 0.1,
    # Leaves need some weight of evidence: on 500,000 generated rows (two seeds) this raised test
    # average precision by 1.5-2 points over 1.0, for about twice the rounds.
    "min_child_weight": 10.0,
    "subsample": 0.9,
    "colsample_bytree": 1.0,
    "max_bin": 256,
}

WEIGHTINGS: dict[str, Callable[[float], float]] = {
    "none": lambda ratio: 1.0,
    "sqrt": math.sqrt,
    "balanced": lambda ratio: ratio,
}
"""scale_pos_weight as a function of neg/pos in the training period."""


class TrainingError(FraudwatchError):
    """The data cannot train a model (a period without fraud, too few rows)."""


@dataclass(frozen=True, slots=True)
class TimeSplit:
    """Row masks of the three periods, and the instants that separate them."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    validation_start: float
    test_start: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """One imbalance weighting as trained: its weight, stopping round and validation figures."""

    name: str
    scale_pos_weight: float
    best_iteration: int
    validation_average_precision: float


@dataclass(slots=True)
class TrainedModel:
    """The kept Booster (cut at its best round), how it was chosen, and its validation scores."""

    booster: xgb.Booster
    chosen: Candidate
    candidates: list[Candidate]
    params: dict[str, Any]
    validation_scores: np.ndarray


def time_split(
    epochs: np.ndarray, train_share: float = TRAIN_SHARE, validation_share: float = VALIDATION_SHARE
) -> TimeSplit:
    """Split by time at the instants below which `train_share` (then + `validation_share`) of rows lie."""
    ordered = np.sort(epochs)
    n = len(ordered)
    validation_start = float(ordered[min(int(n * train_share), n - 1)])
    test_start = float(ordered[min(int(n * (train_share + validation_share)), n - 1)])
    train = epochs < validation_start
    test = epochs >= test_start
    validation = ~train & ~test
    for name, mask in (("training", train), ("validation", validation), ("test", test)):
        if not mask.any():
            raise TrainingError(f"the {name} period is empty: {n} transactions are too few to split by time")
    return TimeSplit(train, validation, test, validation_start, test_start)


def predict(booster: xgb.Booster, values: np.ndarray) -> np.ndarray:
    """Scores as the Lambda computes them: float32 features, one inplace_predict."""
    matrix = np.ascontiguousarray(values, dtype=np.float32)
    return np.asarray(booster.inplace_predict(matrix, validate_features=False), dtype=np.float64)


def train_model(
    values: np.ndarray,
    labels: np.ndarray,
    split: TimeSplit,
    *,
    seed: int = 7,
    weightings: tuple[str, ...] = tuple(WEIGHTINGS),
    nthread: int = 2,
    progress: bool = False,
    feature_names: tuple[str, ...] = FEATURE_NAMES,
) -> TrainedModel:
    """Train one model per weighting with early stopping on validation; keep the best by average precision.

    `nthread` beyond the free cores slows XGBoost down badly (its threads spin); tests pass 1.
    `feature_names` names the columns of `values` (a subset of the features, for a comparison model).
    """
    y_train, y_val = labels[split.train], labels[split.validation]
    positives = int(y_train.sum())
    if positives == 0 or not y_val.any():
        period = "training" if positives == 0 else "validation"
        raise TrainingError(f"the {period} period has no fraud: use more data or a higher fraud rate")
    ratio = (len(y_train) - positives) / positives
    features = list(feature_names)
    x_train = values[split.train].astype(np.float32)
    dtrain = xgb.QuantileDMatrix(x_train, label=y_train, feature_names=features, missing=np.nan)
    x_val = values[split.validation].astype(np.float32)
    dval = xgb.DMatrix(x_val, label=y_val, feature_names=features, missing=np.nan)
    best: tuple[Candidate, xgb.Booster, np.ndarray] | None = None
    candidates = []
    for name in weightings:
        weight = WEIGHTINGS[name](ratio)
        params = {**BASE_PARAMS, "seed": seed, "nthread": nthread, "scale_pos_weight": weight}
        booster = _fit(params, dtrain, dval, f"train ({name})", progress)
        scores = predict(booster, x_val)
        candidate = Candidate(
            name, weight, booster.num_boosted_rounds() - 1, float(average_precision_score(y_val, scores))
        )
        candidates.append(candidate)
        if best is None or candidate.validation_average_precision > best[0].validation_average_precision:
            best = (candidate, booster, scores)
    assert best is not None  # weightings is never empty
    chosen, booster, scores = best
    params = {**BASE_PARAMS, "seed": seed, "nthread": nthread, "scale_pos_weight": chosen.scale_pos_weight}
    return TrainedModel(booster, chosen, candidates, params, scores)


def _fit(
    params: dict[str, Any], dtrain: xgb.DMatrix, dval: xgb.DMatrix, label: str, progress: bool
) -> xgb.Booster:
    """Boost until validation's aucpr stops improving; return the Booster cut at its best round."""
    with tqdm(total=MAX_ROUNDS, desc=label, unit="round", disable=not progress, leave=False) as bar:
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=MAX_ROUNDS,
            evals=[(dval, "validation")],
            early_stopping_rounds=EARLY_STOPPING_ROUNDS,
            verbose_eval=False,
            callbacks=[_Progress(bar)],
        )
    # The returned model holds the rounds after the best one too; the bundle keeps only the best.
    return booster[: booster.best_iteration + 1]


class _Progress(xgb.callback.TrainingCallback):
    """Advances a progress bar by one per boosting round."""

    def __init__(self, bar: tqdm[Any]) -> None:
        super().__init__()
        self._bar = bar

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        self._bar.update(1)
        return False


@dataclass(frozen=True, slots=True)
class ThresholdTargets:
    """What the decision thresholds are chosen for, on the validation period.

    REJECTED: the lowest score whose alerts (score >= it, at least `min_alerts` of them) reach
    `reject_precision`, so a rejected customer is almost surely a fraudster; when no threshold does,
    the one with the best precision is kept and the card says so.
    FLAGGED: the highest score that still catches `flag_recall` of the fraud (alerts are reviewed, so
    flag no more than needed), but never more than `review_budget` of all transactions: when the
    recall target needs more, the budget wins and the card says so. FLAGGED never exceeds REJECTED.
    """

    reject_precision: float = 0.95
    flag_recall: float = 0.80
    review_budget: float = 0.02
    min_alerts: int = 10


@dataclass(frozen=True, slots=True)
class Operating:
    """How a threshold performs: precision, recall and the share of transactions at or above it."""

    threshold: float
    precision: float
    recall: float
    alert_share: float
    alerts: int


@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    """The chosen thresholds, how they perform on validation, and any target that could not be met."""

    flag: Operating
    reject: Operating
    targets: ThresholdTargets
    notes: tuple[str, ...]


def operating_points(scores: np.ndarray, labels: np.ndarray) -> list[Operating]:
    """Every distinct score as a threshold (alert when score >= it), from the highest down."""
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], labels[order].astype(np.int64)
    true_alerts = np.cumsum(hits)
    # The last position of each run of equal scores: alerting at that score includes the whole run.
    ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    positives = max(int(hits.sum()), 1)
    return [
        Operating(
            threshold=float(ranked[i]),
            precision=float(true_alerts[i]) / (i + 1),
            recall=float(true_alerts[i]) / positives,
            alert_share=(i + 1) / len(scores),
            alerts=int(i + 1),
        )
        for i in ends
    ]


def choose_thresholds(
    scores: np.ndarray, labels: np.ndarray, targets: ThresholdTargets | None = None
) -> ThresholdChoice:
    """Pick the FLAGGED and REJECTED thresholds from validation scores (see ThresholdTargets)."""
    targets = targets or ThresholdTargets()
    if not labels.any():
        raise TrainingError("cannot choose thresholds: the validation period has no fraud")
    points = operating_points(scores, labels)
    notes: list[str] = []
    reject = _reject_point(points, targets, notes)
    flag = _flag_point(points, targets, notes)
    if flag.threshold > reject.threshold:
        notes.append("the FLAGGED threshold came out above REJECTED; FLAGGED was lowered to it")
        flag = reject
    return ThresholdChoice(flag, reject, targets, tuple(notes))


def _reject_point(points: list[Operating], targets: ThresholdTargets, notes: list[str]) -> Operating:
    supported = [p for p in points if p.alerts >= targets.min_alerts] or points
    meeting = [p for p in supported if p.precision >= targets.reject_precision]
    if meeting:
        return meeting[-1]
    best = max(supported, key=lambda p: (p.precision, p.alerts))
    notes.append(
        f"no threshold reached the REJECTED precision target {targets.reject_precision:.2f} on validation; "
        f"REJECTED uses the best precision found, {best.precision:.3f}"
    )
    return best


def _flag_point(points: list[Operating], targets: ThresholdTargets, notes: list[str]) -> Operating:
    within_budget = [p for p in points if p.alert_share <= targets.review_budget] or points[:1]
    by_recall = next((p for p in points if p.recall >= targets.flag_recall), points[-1])
    if by_recall.alert_share <= targets.review_budget:
        return by_recall
    cheapest = within_budget[-1]
    notes.append(
        f"reaching recall {targets.flag_recall:.2f} would flag {by_recall.alert_share:.2%} of transactions, "
        f"over the {targets.review_budget:.2%} review budget; FLAGGED is set by the budget "
        f"(recall {cheapest.recall:.3f})"
    )
    return cheapest
