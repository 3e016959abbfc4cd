"""Offline features: history replayed in time order through the Lambda's own feature functions.

Nothing here defines a feature. Each transaction becomes the same `Transaction` the stream's parser
builds (the columns are checked by `training.io` with the contract's rules, the timestamp is parsed
row by row with the contract's own parser), and then, one user profile at a time, `features(profile,
tx)` describes it and `apply(profile, tx)` folds it in, exactly as the Lambda does. Offline and
online features are therefore equal by construction; `tests/unit/test_parity.py` checks it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from fraudwatch.domain.features import FEATURE_NAMES, apply, features
from fraudwatch.domain.profile import UserProfile

# The contract's own timestamp parser: offline instants are the stream's by construction.
from fraudwatch.domain.transaction import Transaction, parse_timestamp
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


CANONICAL_TIMESTAMP = (
    r"[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
"""The common ISO 8601 form, `2026-09-01T14:03:07.250+02:00`, whose instant and hour are vectorised
(years from 1000: pandas accepts a year 0 that Python's calendar does not have)."""


def to_transactions(frame: pd.DataFrame, *, source: str = "data") -> list[Transaction]:
    """The frame's rows (already checked by `training.io`) as the contract's Transactions, in order."""
    texts = frame["timestamp"]
    fast, epochs, hours = _canonical_instants(texts)
    out: list[Transaction] = []
    append = out.append
    rows = zip(
        frame["transaction_id"].tolist(),
        frame["user_id"].tolist(),
        frame["merchant_id"].tolist(),
        frame["amount"].astype("float64").tolist(),
        frame["currency"].tolist(),
        texts.tolist(),
        frame["category"].tolist(),
        fast,
        epochs,
        hours,
        strict=True,
    )
    for row, (tx_id, user, merchant, amount, currency, text, category, is_fast, epoch, hour) in enumerate(
        rows
    ):
        if not is_fast:
            epoch, hour = _instant(text, row, source)
        append(Transaction(tx_id, user, merchant, amount, currency, text, category, epoch, hour))
    return out


def _canonical_instants(texts: pd.Series) -> tuple[list[bool], list[float], list[int]]:
    """Epoch seconds and local hour of the timestamps in the canonical form, vectorised.

    Exactly what the contract's parser gives: the instant in whole microseconds divided by 10**6 is
    the same correctly rounded float as `datetime.timestamp()`, and the local hour is the one written.
    Other forms, and canonical-looking ones pandas cannot place (30 February), are flagged not fast
    and go through the contract's parser row by row, which also names the bad ones.
    """
    canonical = texts.str.fullmatch(CANONICAL_TIMESTAMP).to_numpy(dtype=bool, na_value=False)
    parsed = pd.to_datetime(texts.where(canonical), utc=True, format="ISO8601", errors="coerce")
    fast = canonical & parsed.notna().to_numpy()
    micros = parsed.where(fast, pd.Timestamp(0, tz="UTC")).dt.as_unit("us").astype("int64").to_numpy()
    hours = texts.str.slice(11, 13).where(fast, "0").astype("int64").to_numpy()
    return fast.tolist(), (micros / 1e6).tolist(), hours.tolist()


def _instant(text: str, row: int, source: str) -> tuple[float, int]:
    try:
        instant = parse_timestamp(text)
    except InvalidRecordError as exc:
        problem = f"column 'timestamp', row {row + 1}: {text!r} {exc.reason}"
        raise DataFileError(f"{source}: {problem}") from exc
    return instant.timestamp(), instant.hour


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
    with _without_cycle_collection():
        rows = _replay(transactions, order.tolist(), progress)
    values = np.empty((len(rows), len(FEATURE_NAMES)), dtype=np.float64)
    values[order] = np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))
    return FeatureMatrix(values=values, epochs=epochs, order=order)


def _replay(transactions: list[Transaction], order: list[int], progress: bool) -> list[tuple[float, ...]]:
    """Features then profile update, transaction by transaction in `order`, a profile per user."""
    profiles: dict[str, UserProfile] = {}
    rows: list[tuple[float, ...]] = []
    append = rows.append
    for i in tqdm(order, desc="features", unit="tx", unit_scale=True, disable=not progress, mininterval=0.5):
        tx = transactions[i]
        profile = profiles.get(tx.user_id)
        if profile is None:
            profile = profiles[tx.user_id] = UserProfile(tx.user_id)
        append(features(profile, tx))
        apply(profile, tx)
    return rows


def replay_profiles(transactions: Iterable[Transaction]) -> dict[str, UserProfile]:
    """Each user's profile after their transactions, folded in the order given (time order)."""
    profiles: dict[str, UserProfile] = {}
    for tx in transactions:
        profile = profiles.get(tx.user_id)
        if profile is None:
            profile = profiles[tx.user_id] = UserProfile(tx.user_id)
        apply(profile, tx)
        profile.mark_applied(tx.transaction_id, None, None)
    return profiles


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector for the replay.

    The replay makes millions of objects that all live on and form no cycles; the collector would
    rescan them again and again (about a tenth of the replay's time).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
