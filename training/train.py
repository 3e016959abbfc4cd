"""Training: a time-based split, XGBoost chosen on time-ordered folds and refitted, and the thresholds.

Time, not chance, separates the sets: the model learns on the earliest period, gets its thresholds on
the next, and is judged on the latest, as it will be used. Its configuration (tree method, histogram
resolution, depth, learning rate, leaf weight, rounds, and the weighting of the positive class, fraud
being about 1% of transactions) is chosen on folds inside the training period (training.selection);
weighting shifts the scores, which the thresholds, chosen after, absorb.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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
from training.selection import DEFAULT_SEARCH, SEARCHES, WEIGHTINGS, Candidate, Config, Fold, best, time_folds

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


@dataclass(slots=True)
class TrainedModel:
    """The refitted Booster, how its configuration was chosen, and its out-of-sample validation scores."""

    booster: xgb.Booster
    chosen: Candidate
    candidates: list[Candidate]
    params: dict[str, Any]
    validation_scores: np.ndarray
    """The chosen configuration's scores of the validation period, from its last fold's model (which
    did not train on that period): the thresholds are chosen on them."""
    search: str = DEFAULT_SEARCH
    folds: list[Fold] = field(default_factory=list)
    gap: float = 0.0
    """Seconds left out before each fold's window: the label delay, or 0 when the training period is
    too short for it."""


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
    epochs: np.ndarray,
    gap: float = 0.0,
    search: str = DEFAULT_SEARCH,
    seed: int = 7,
    nthread: int = 2,
    progress: bool = False,
    feature_names: tuple[str, ...] = FEATURE_NAMES,
    boosting: Boosting | None = None,
) -> TrainedModel:
    """Try the search's configurations on time-ordered folds of the training and validation periods
    (`gap` seconds of labels not yet back before each fold's window), keep the best by mean average
    precision, and refit it on both periods with its mean stopping rounds (training.selection).

    `nthread` beyond the free cores slows XGBoost down badly (its threads spin); tests pass 1.
    `feature_names` names the columns of `values` (a subset of the features, for a comparison model).
    `boosting` boosts the folds' models somewhere else than this process (on a Dask cluster,
    `training.distributed.train`); the search, the folds and the choice are the same.
    """
    if search not in SEARCHES:
        raise TrainingError(f"unknown search {search!r}: expected one of {', '.join(SEARCHES)}")
    plan = SEARCHES[search]
    folds = time_folds(epochs, split.train, split.validation, plan.folds, gap)
    if gap and not labels[folds[-1].train].any():
        # A training period not much longer than the label delay (a week's training, labels back in
        # seven days) would leave the last fold nothing to learn from: its labels are taken as known.
        gap = 0.0
        folds = time_folds(epochs, split.train, split.validation, plan.folds, gap)
    last = folds[-1]
    if not labels[last.train].any() or not labels[split.validation].any():
        period = "validation" if labels[last.train].any() else "training"
        raise TrainingError(f"the {period} period has no fraud: use more data or a higher fraud rate")
    folds = [fold for fold in folds[:-1] if labels[fold.train].any() and labels[fold.validation].any()] + [
        last
    ]
    features = list(feature_names)

    def here(fold: Fold) -> FoldBoosting:
        return _FoldMatrices(values, labels, fold, features, progress)

    boost = boosting or here
    tried: dict[str, list[tuple[float, int]]] = {config.name: [] for config in plan.configs}
    last_scores: dict[str, np.ndarray] = {}
    for number, fold in enumerate(folds, 1):
        matrices = boost(fold)
        for config in plan.configs:
            label = f"fold {number}/{len(folds)} {config.name}"
            booster, scores = matrices.fit(_params(config, matrices.ratio, seed, nthread), label)
            tried[config.name].append(
                (float(average_precision_score(matrices.y_validation, scores)), booster.num_boosted_rounds())
            )
            if fold is last:
                last_scores[config.name] = scores
    period = split.train | split.validation
    ratio = positive_ratio(labels[period])
    candidates = [
        Candidate(
            config.name,
            config.params,
            config.weighting,
            WEIGHTINGS[config.weighting](ratio),
            tuple(ap for ap, _ in tried[config.name]),
            tuple(rounds for _, rounds in tried[config.name]),
        )
        for config in plan.configs
    ]
    chosen = best(candidates)
    config = next(c for c in plan.configs if c.name == chosen.name)
    params = _params(config, ratio, seed, nthread)
    refit = boost(Fold(period, np.zeros_like(period), 0.0, 0.0))  # nothing left to validate on
    booster = refit.refit(params, chosen.best_iteration + 1, f"refit {config.name}")
    return TrainedModel(booster, chosen, candidates, params, last_scores[chosen.name], search, folds, gap)


class FoldBoosting(Protocol):
    """One fold's rows, where its models are boosted."""

    ratio: float
    """neg/pos of the fold's training rows."""
    y_validation: np.ndarray
    """The labels of its validation rows, in row order."""

    def fit(self, params: dict[str, Any], label: str) -> tuple[xgb.Booster, np.ndarray]:
        """Boost until validation's aucpr stops improving; the Booster cut at its best round, and its
        scores of the validation rows in row order."""
        ...

    def refit(self, params: dict[str, Any], rounds: int, label: str) -> xgb.Booster:
        """Boost a fixed number of rounds on the training rows (nothing left to stop early on)."""
        ...


Boosting = Callable[[Fold], FoldBoosting]
"""Where a fold's models are boosted: this process (`_FoldMatrices`) or a cluster."""


def positive_ratio(labels: np.ndarray) -> float:
    """neg/pos of these rows (at least one positive)."""
    positives = max(int(labels.sum()), 1)
    return (len(labels) - positives) / positives


def _params(config: Config, ratio: float, seed: int, nthread: int) -> dict[str, Any]:
    weight = WEIGHTINGS[config.weighting](ratio)
    return {**BASE_PARAMS, **config.params, "seed": seed, "nthread": nthread, "scale_pos_weight": weight}


class _FoldMatrices:
    """A fold's rows as XGBoost takes them in this process, the training matrix built once per histogram
    resolution (a FoldBoosting)."""

    def __init__(
        self, values: np.ndarray, labels: np.ndarray, fold: Fold, features: list[str], progress: bool = False
    ) -> None:
        self._x = values[fold.train].astype(np.float32)
        self._y = labels[fold.train]
        self._features = features
        self._progress = progress
        self._built: dict[object, xgb.DMatrix] = {}
        self.ratio = positive_ratio(self._y)
        self.x_validation = values[fold.validation].astype(np.float32)
        self.y_validation = labels[fold.validation]
        self.validation = xgb.DMatrix(
            self.x_validation, label=self.y_validation, feature_names=features, missing=np.nan
        )

    def train(self, params: dict[str, Any]) -> xgb.DMatrix:
        """The training matrix for these parameters: quantised at their resolution for `hist`, plain
        for `exact` (which a QuantileDMatrix cannot serve)."""
        key = "exact" if params["tree_method"] == "exact" else params["max_bin"]
        if key not in self._built:
            if key == "exact":
                self._built[key] = xgb.DMatrix(
                    self._x, label=self._y, feature_names=self._features, missing=np.nan
                )
            else:
                self._built[key] = xgb.QuantileDMatrix(
                    self._x, label=self._y, feature_names=self._features, missing=np.nan, max_bin=key
                )
        return self._built[key]

    def fit(self, params: dict[str, Any], label: str) -> tuple[xgb.Booster, np.ndarray]:
        """Boost until validation's aucpr stops improving; the Booster cut at its best round, its scores."""
        with tqdm(total=MAX_ROUNDS, desc=label, unit="round", disable=not self._progress, leave=False) as bar:
            booster = xgb.train(
                params,
                self.train(params),
                num_boost_round=MAX_ROUNDS,
                evals=[(self.validation, "validation")],
                early_stopping_rounds=EARLY_STOPPING_ROUNDS,
                verbose_eval=False,
                callbacks=[_Progress(bar)],
            )
        # The returned model holds the rounds after the best one too; only the best are kept.
        booster = booster[: booster.best_iteration + 1]
        return booster, predict(booster, self.x_validation)

    def refit(self, params: dict[str, Any], rounds: int, label: str) -> xgb.Booster:
        """Boost a fixed number of rounds on the whole training period (nothing left to stop early on)."""
        with tqdm(total=rounds, desc=label, unit="round", disable=not self._progress, leave=False) as bar:
            return xgb.train(params, self.train(params), num_boost_round=rounds, callbacks=[_Progress(bar)])


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
