"""The backtest's periods, and the checks of a file's time order and span (see `training.backtest.run`).

Periods start at the UTC midnight of the file's first transaction: training, a gap, then the test.
Within the training period, the earliest FIT_SHARE of transactions fit the model and the rest stop the
boosting early and choose the thresholds, as `training.train.time_split` does for `fraudwatch train`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from fraudwatch.domain.features import DAY
from training.backtest.errors import BacktestError
from training.io import DataFileError
from training.train import TimeSplit

FIT_SHARE = 0.80
"""Of the training period's transactions, the earliest share fits the model; the rest validates."""


@dataclass(frozen=True, slots=True)
class Periods:
    """The instants (epoch seconds) that bound the periods; the test period may run to infinity."""

    origin: float
    train_end: float
    test_start: float
    test_end: float

    def describe(self) -> dict[str, tuple[float, float]]:
        """Each period's [start, end), by name."""
        return {
            "training": (self.origin, self.train_end),
            "gap": (self.train_end, self.test_start),
            "test": (self.test_start, self.test_end),
        }


def check_time_order(epochs: np.ndarray, timestamps: pd.Series, source: str) -> None:
    """Raise DataFileError at the first row whose instant is earlier than the row before it (1-based rows)."""
    earlier = np.flatnonzero(epochs[1:] < epochs[:-1])
    if len(earlier):
        previous = int(earlier[0])
        raise DataFileError(
            f"{source}: row {previous + 2}: timestamp {timestamps.iloc[previous + 1]!r} is earlier than row "
            f"{previous + 1}'s {timestamps.iloc[previous]!r}: sort the file by timestamp (by instant)"
        )


def plan_periods(
    epochs: np.ndarray, train_days: int, gap_days: int, test_days: int | None, source: str
) -> Periods:
    """The periods' bounds, checked against the file's span; raise BacktestError when they do not fit."""
    first, last = float(epochs.min()), float(epochs.max())
    origin = math.floor(first / DAY) * DAY
    train_end = origin + train_days * DAY
    test_start = train_end + gap_days * DAY
    end_of_file = math.floor(last / DAY) * DAY + DAY
    span = f"the file runs from {iso(first)} to {iso(last)} ({(end_of_file - origin) / DAY:.0f} UTC days)"
    if test_start > last:
        raise BacktestError(
            f"{source}: the test period would start at {iso(test_start)} "
            f"({train_days} training and {gap_days} gap days from {iso(origin)}), "
            f"after the last transaction: {span}"
        )
    test_end = math.inf if test_days is None else test_start + test_days * DAY
    if test_days is not None and test_end > end_of_file:
        raise BacktestError(
            f"{source}: the test period of {test_days} days would end at {iso(test_end)}, "
            f"after the file's last day: {span}"
        )
    test_rows = int(((epochs >= test_start) & (epochs < test_end)).sum())
    if test_rows == 0:
        raise BacktestError(
            f"{source}: the test period from {iso(test_start)} to {iso(test_end)} has no transactions"
        )
    return Periods(origin, train_end, test_start, test_end)


def fitting_split(epochs: np.ndarray, periods: Periods, source: str) -> TimeSplit:
    """The training period's earliest FIT_SHARE of rows fit, the rest validate; the test period tests."""
    training = (epochs >= periods.origin) & (epochs < periods.train_end)
    ordered = np.sort(epochs[training])
    cut = float(ordered[min(int(len(ordered) * FIT_SHARE), len(ordered) - 1)])
    fit, validation = training & (epochs < cut), training & (epochs >= cut)
    if not fit.any():
        raise BacktestError(
            f"{source}: the training period's {len(ordered):,} transactions are too few to split"
        )
    test = (epochs >= periods.test_start) & (epochs < periods.test_end)
    return TimeSplit(fit, validation, test, cut, periods.test_start)


def iso(epoch: float) -> str:
    """An instant as ISO 8601 in UTC (infinity: the end of the file)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat() if math.isfinite(epoch) else "the end of the file"
