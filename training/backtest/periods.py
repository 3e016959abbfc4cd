"""The backtest's periods, and the checks of a file's time order and span (see `training.backtest.run`).

By default the periods start at the UTC midnight of the file's first transaction: training, a gap, then
the test. Any bound can be given as a date instead (`PeriodBounds`); whatever lies before the training
start is a warm-up, replayed so the profiles know it but neither trained on nor scored.
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
from training.backtest.config import PeriodBounds
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
            "warm-up": (-math.inf, self.origin),
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
    epochs: np.ndarray,
    train_days: int,
    gap_days: int,
    test_days: int | None,
    source: str,
    bounds: PeriodBounds | None = None,
) -> Periods:
    """The periods' bounds, checked against the file's span; raise BacktestError naming the period at fault.

    A bound given in `bounds` wins over the day count it replaces: the training start defaults to the
    first transaction's UTC midnight, its end to `train_days` later, the test start to `gap_days` after
    the training end, the test end to `test_days` after the test start (or the end of the file).
    """
    bounds = bounds or PeriodBounds()
    first, last = float(epochs.min()), float(epochs.max())
    end_of_file = math.floor(last / DAY) * DAY + DAY
    span = f"the file runs from {iso(first)} to {iso(last)}"
    origin = math.floor(first / DAY) * DAY if bounds.train_start is None else bounds.train_start
    train_end = origin + train_days * DAY if bounds.train_end is None else bounds.train_end
    test_start = train_end + gap_days * DAY if bounds.test_start is None else bounds.test_start
    if bounds.test_end is not None:
        test_end = bounds.test_end
    else:
        test_end = math.inf if test_days is None else test_start + test_days * DAY
    if train_end <= origin:
        raise BacktestError(
            f"{source}: the training period from {iso(origin)} to {iso(train_end)} is empty or out of "
            "order: give a --train-end after --train-start"
        )
    if test_start < train_end:
        raise BacktestError(
            f"{source}: the test period starts at {iso(test_start)}, before the training period ends at "
            f"{iso(train_end)}: give a --test-start at or after the training end"
        )
    if test_end <= test_start:
        raise BacktestError(
            f"{source}: the test period from {iso(test_start)} to {iso(test_end)} is empty or out of "
            "order: give a --test-end after --test-start"
        )
    if test_days is not None and bounds.test_end is None and test_end > end_of_file:
        raise BacktestError(
            f"{source}: the test period of {test_days} days would end at {iso(test_end)}, "
            f"after the file's last day ({span}): give fewer --test-days"
        )
    for name, start, end, option in (
        ("training", origin, train_end, "--train-start/--train-end (or --train-days)"),
        ("test", test_start, test_end, "--test-start/--test-end (or --train-days and --gap-days)"),
    ):
        if not ((epochs >= start) & (epochs < end)).any():
            raise BacktestError(
                f"{source}: the {name} period from {iso(start)} to {iso(end)} has no transactions "
                f"({span}): move it with {option}"
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
    """An instant as ISO 8601 in UTC (infinity: the end of the file; minus infinity: its start)."""
    if math.isfinite(epoch):
        return datetime.fromtimestamp(epoch, UTC).isoformat()
    return "the end of the file" if epoch > 0 else "the start of the file"
