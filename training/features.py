"""Offline features: history replayed in time order through the Lambda's own feature functions.

Nothing here defines a feature. Each transaction becomes the same `Transaction` the stream's parser
builds (the columns are checked by `training.io` with the contract's rules, the timestamp is parsed
row by row with the contract's own parser), and then, one user profile at a time, `features(profile,
tx)` describes it and `apply(profile, tx)` folds it in, exactly as the Lambda does. Offline and
online features are therefore equal by construction; `tests/unit/test_parity.py` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from fraudwatch.domain.features import FEATURE_NAMES, apply, features
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.transaction import Transaction, _timestamp
from fraudwatch.errors import InvalidRecordError
from training.io import DataFileError, check_transactions


@dataclass(frozen=True, slots=True)
class FeatureMatrix:
    """Features of every transaction, row i describing the frame's row i."""

    values: np.ndarray
    """float64, shape (rows, len(FEATURE_NAMES)), NaN where a feature is undefined."""
    epochs: np.ndarray
    """Each transaction's instant, epoch seconds."""
    order: np.ndarray
    """The replay order: row indices sorted by time (stable, so ties keep the file's order)."""

    @property
    def names(self) -> tuple[str, ...]:
        """The columns' feature names."""
        return FEATURE_NAMES


def to_transactions(frame: pd.DataFrame, *, source: str = "data") -> list[Transaction]:
    """The frame's rows (already checked by `training.io`) as the contract's Transactions, in order."""
    out: list[Transaction] = []
    append = out.append
    rows = zip(
        frame["transaction_id"].tolist(),
        frame["user_id"].tolist(),
        frame["merchant_id"].tolist(),
        frame["amount"].astype("float64").tolist(),
        frame["currency"].tolist(),
        frame["timestamp"].tolist(),
        frame["category"].tolist(),
        strict=True,
    )
    for row, (tx_id, user, merchant, amount, currency, text, category) in enumerate(rows):
        try:
            instant = _timestamp(text)
        except InvalidRecordError as exc:
            problem = f"column 'timestamp', row {row + 1}: {text!r} {exc.reason}"
            raise DataFileError(f"{source}: {problem}") from exc
        append(
            Transaction(
                tx_id, user, merchant, amount, currency, text, category, instant.timestamp(), instant.hour
            )
        )
    return out


def compute_features(
    frame: pd.DataFrame, *, source: str = "data", check: bool = True, progress: bool = False
) -> FeatureMatrix:
    """Replay the frame's transactions in time order, a profile per user, and collect their features.

    `check=False` skips the column checks for a frame that `training.io` has already read and checked.
    """
    if check:
        check_transactions(frame, source=source, labelled=False)
    transactions = to_transactions(frame, source=source)
    epochs = np.fromiter((tx.epoch for tx in transactions), dtype=np.float64, count=len(transactions))
    order = np.argsort(epochs, kind="stable")
    profiles: dict[str, UserProfile] = {}
    rows: list[tuple[float, ...]] = []
    append = rows.append
    for i in tqdm(
        order.tolist(), desc="features", unit="tx", unit_scale=True, disable=not progress, mininterval=0.5
    ):
        tx = transactions[i]
        profile = profiles.get(tx.user_id)
        if profile is None:
            profile = profiles[tx.user_id] = UserProfile(tx.user_id)
        append(features(profile, tx))
        apply(profile, tx)
    values = np.empty((len(rows), len(FEATURE_NAMES)), dtype=np.float64)
    values[order] = np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))
    return FeatureMatrix(values=values, epochs=epochs, order=order)
