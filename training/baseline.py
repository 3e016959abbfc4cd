"""The baseline every report is measured against: a plain XGBoost on textbook features.

The features are those of the textbook of card-fraud detection (Le Borgne et al., "Reproducible
Machine Learning for Credit Card Fraud Detection", chapter 3): the amount; whether the payment falls
on a weekend and at night (local time); per card, the count and mean amount of its payments over the
last 1, 7 and 30 days (the payment itself included); per merchant, the count of its payments and the
share of them that were fraud over the 1, 7 and 30 days that end a label delay before the payment
(only payments whose label has come back count). They are computed vectorised with numpy and pandas,
from the file alone: nothing here is the Lambda's, so the baseline shares no code, and no mistake,
with the model it is compared to. The model is XGBoost's defaults (100 rounds) trained on the whole
training period; no early stopping, no weighting, no tuning.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fraudwatch.domain.features import DAY
from training.io import id_texts

BASELINE = "baseline"
BASELINE_NOTE = (
    "XGBoost with its default settings (100 rounds, no tuning, no weighting) on textbook features (the "
    "amount; weekend and night; per card, the count and mean amount over 1, 7 and 30 days; per merchant, "
    "the count and fraud rate over 1, 7 and 30 days ending a label delay before the payment), trained on "
    "the whole training period (training.baseline)."
)
WINDOWS_DAYS = (1, 7, 30)
BASELINE_FEATURES = (
    "amount",
    "is_weekend",
    "is_night",
    *(f"card_{stat}_{w}d" for w in WINDOWS_DAYS for stat in ("count", "mean_amount")),
    *(f"merchant_{stat}_{w}d" for w in WINDOWS_DAYS for stat in ("count", "fraud_rate")),
)
BASELINE_ROUNDS = 100
"""XGBoost's default number of rounds (its scikit-learn wrapper's n_estimators)."""
NIGHT_END_HOUR = 6
"""Night is 00:00 to 05:59 local time, as in the textbook."""


def baseline_features(
    frame: pd.DataFrame, epochs: np.ndarray, hours: np.ndarray, label_delay: float
) -> np.ndarray:
    """The BASELINE_FEATURES of every row of a checked labelled frame, float64, in the frame's order.

    `epochs` and `hours` are the rows' instants and local hours (`training.features.instants`).
    """
    amounts = frame["amount"].to_numpy(dtype=np.float64)
    labels = frame["is_fraud"].to_numpy(dtype=np.float64)
    utc_hours = np.floor(np.mod(epochs, DAY) / 3600)
    offset_hours = np.mod(hours - utc_hours + 12, 24) - 12  # the local offset, to the hour
    local_days = np.floor((epochs + offset_hours * 3600) / DAY)
    weekday = np.mod(local_days + 3, 7)  # 1970-01-01 was a Thursday; Monday is 0
    columns = [amounts, (weekday >= 5).astype(np.float64), (hours < NIGHT_END_HOUR).astype(np.float64)]
    cards = _Windows(id_texts(frame["user_id"]), epochs)
    for days in WINDOWS_DAYS:
        count = cards.count(epochs - days * DAY, epochs, right_inclusive=True)
        total = cards.total(amounts, epochs - days * DAY, epochs, right_inclusive=True)
        columns += [count, total / count]
    merchants = _Windows(id_texts(frame["merchant_id"]), epochs)
    known = epochs - label_delay
    for days in WINDOWS_DAYS:
        count = merchants.count(known - days * DAY, known, right_inclusive=False)
        frauds = merchants.total(labels, known - days * DAY, known, right_inclusive=False)
        with np.errstate(invalid="ignore", divide="ignore"):
            columns += [count, np.where(count > 0, frauds / count, 0.0)]
    return np.column_stack(columns)


class _Windows:
    """Sums over time windows per owner (card or merchant), by binary search on one sorted key."""

    def __init__(self, owners: pd.Series, epochs: np.ndarray) -> None:
        codes, _ = pd.factorize(owners)
        origin = float(epochs.min())
        # Each owner's instants in a band of its own, far enough apart that no window crosses bands.
        self.band = float(epochs.max()) - origin + 400 * DAY
        self.base = codes.astype(np.float64) * self.band - origin
        keys = self.base + epochs
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]

    def _bounds(self, start: np.ndarray, end: np.ndarray, right_inclusive: bool) -> tuple[Any, Any]:
        lo = np.searchsorted(self.keys, self.base + start, side="left")
        hi = np.searchsorted(self.keys, self.base + end, side="right" if right_inclusive else "left")
        return lo, hi

    def count(self, start: np.ndarray, end: np.ndarray, *, right_inclusive: bool) -> np.ndarray:
        """How many of the owner's rows fall in [start, end) (or [start, end])."""
        lo, hi = self._bounds(start, end, right_inclusive)
        counted: np.ndarray = np.asarray(hi - lo, dtype=np.float64)
        return counted

    def total(
        self, values: np.ndarray, start: np.ndarray, end: np.ndarray, *, right_inclusive: bool
    ) -> np.ndarray:
        """The sum of `values` over the owner's rows in the window."""
        cumulative = np.concatenate([[0.0], np.cumsum(values[self.order])])
        lo, hi = self._bounds(start, end, right_inclusive)
        return np.asarray(cumulative[hi] - cumulative[lo])


def train_baseline(
    features: np.ndarray, labels: np.ndarray, training: np.ndarray, *, seed: int, nthread: int
) -> Any:
    """XGBoost with its default settings, BASELINE_ROUNDS rounds on the `training` rows; the Booster."""
    import xgboost as xgb

    data = xgb.DMatrix(
        features[training].astype(np.float32), label=labels[training], feature_names=list(BASELINE_FEATURES)
    )
    params = {"objective": "binary:logistic", "seed": seed, "nthread": nthread}
    return xgb.train(params, data, num_boost_round=BASELINE_ROUNDS)


def baseline_scores(
    frame: pd.DataFrame,
    training: np.ndarray,
    scored: np.ndarray,
    *,
    label_delay: float,
    seed: int,
    nthread: int,
) -> np.ndarray:
    """The baseline trained on the `training` rows, scoring the `scored` rows (float64)."""
    import xgboost as xgb

    from training.features import instants

    epochs, hours = instants(frame)
    features = baseline_features(frame, epochs, hours, label_delay)
    labels = frame["is_fraud"].to_numpy(dtype=bool)
    booster = train_baseline(features, labels, training, seed=seed, nthread=nthread)
    data = xgb.DMatrix(features[scored].astype(np.float32), feature_names=list(BASELINE_FEATURES))
    scores: np.ndarray = np.asarray(booster.predict(data), dtype=np.float64)
    return scores
