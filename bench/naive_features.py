"""The naive way to compute the training features: per transaction, filter the history with pandas.

What a first draft of offline features looks like: for each transaction in time order, boolean masks
over the whole frame select the user's earlier transactions, the labels its merchant had by then and
its merchant's payments of earlier days, and pandas aggregates them. The same 28 features as
`fraudwatch.domain.features` (written again here on purpose, as the baseline of
`bench/training_pipeline.py`: nothing outside bench/ uses it), with the same windows: half-open
recent windows, whole UTC days before the transaction's day for the long ones, labels counted from
the midnight after they became known, a card new to a merchant on a day when it had not paid there
in the 30 days before. The cost of each row grows with the frame, so the whole is quadratic: it is
measured on a sample.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fraudwatch.domain.features import DAY, FEATURE_NAMES, HOUR, MIN_SPREAD, NIGHT_END_HOUR
from training.features import instants

NAN = math.nan


def naive_features(frame: pd.DataFrame, label_delay: float | None) -> np.ndarray:
    """Every feature of every row (row i describes the frame's row i), one pandas query per feature."""
    epochs, hours = instants(frame)
    data = frame.assign(epoch=epochs, hour=hours).reset_index(drop=True)
    data["position"] = np.argsort(np.argsort(epochs, kind="stable"), kind="stable")  # rank in time order
    data["day"] = np.floor_divide(epochs, DAY).astype(np.int64)
    labelled = label_delay is not None and "is_fraud" in data.columns
    if labelled:
        data["known_day"] = np.floor_divide(epochs + label_delay, DAY).astype(np.int64)
    values = np.empty((len(data), len(FEATURE_NAMES)), dtype=np.float64)
    for i, tx in enumerate(data.itertuples(index=False)):
        mine = data[(data["user_id"] == tx.user_id) & (data["position"] < tx.position)]
        merchant = data[data["merchant_id"] == tx.merchant_id]
        values[i] = _user(tx, mine) + _merchant(tx, merchant, labelled) + _activity(tx, merchant)
    return values


def _user(tx: object, mine: pd.DataFrame) -> tuple[float, ...]:
    t, amount, day, hour = tx.epoch, tx.amount, tx.day, tx.hour  # type: ignore[attr-defined]
    n = len(mine)
    if n:
        mean = float(mine["amount"].mean())
        spread = max(float(mine["amount"].std(ddof=0)), MIN_SPREAD)
        zscore, to_mean = (amount - mean) / spread, (amount / mean if mean else NAN)
        since_last = max(t - float(mine["epoch"].max()), 0.0)
    else:
        zscore = to_mean = since_last = NAN
    last_day = mine[mine["epoch"] > t - DAY]
    week = mine[(mine["day"] >= day - 7) & (mine["day"] < day)]
    month = mine[(mine["day"] >= day - 30) & (mine["day"] < day)]
    week_mean = float(week["amount"].mean()) if len(week) else NAN
    return (
        amount,
        zscore,
        to_mean,
        float((mine["epoch"] > t - HOUR).sum()),
        float(len(last_day)),
        float(last_day["amount"].sum()),
        float(hour),
        1.0 if hour < NIGHT_END_HOUR else 0.0,
        since_last,
        0.0 if (mine["category"] == tx.category).any() else 1.0,  # type: ignore[attr-defined]
        0.0 if (mine["merchant_id"] == tx.merchant_id).any() else 1.0,  # type: ignore[attr-defined]
        float(n),
        float(len(week)),
        week_mean,
        float(len(month)),
        float(month["amount"].mean()) if len(month) else NAN,
        amount / week_mean if week_mean else NAN,
    )


def _activity(tx: object, merchant: pd.DataFrame) -> tuple[float, ...]:
    day = tx.day  # type: ignore[attr-defined]
    month = merchant[(merchant["day"] >= day - 30) & (merchant["day"] < day)]
    if month.empty:
        return (0.0, NAN, NAN, NAN, NAN)
    yesterday = month[month["day"] == day - 1]
    shares = []
    for first in (day - 1, day - 7, day - 30):
        card_days = month[month["day"] >= first].drop_duplicates(["day", "user_id"])
        new = 0
        for card_day, card in zip(card_days["day"], card_days["user_id"], strict=True):
            earlier = merchant[(merchant["user_id"] == card) & (merchant["day"] < card_day)]
            new += bool(earlier.empty or earlier["day"].max() < card_day - 30)
        shares.append(new / len(card_days) if len(card_days) else NAN)
    return (float(len(yesterday)), len(yesterday) * 30 / len(month), *shares)


def _merchant(tx: object, merchant: pd.DataFrame, labelled: bool) -> tuple[float, ...]:
    if not labelled:
        return (0.0, NAN, 0.0, NAN, 0.0, NAN)
    day = tx.day  # type: ignore[attr-defined]
    out: list[float] = []
    for first in (day - 1, day - 7, day - 30):
        known = merchant[(merchant["known_day"] >= first) & (merchant["known_day"] < day)]
        count = len(known)
        out += [float(count), float(known["is_fraud"].sum()) / count if count else NAN]
    return tuple(out)
