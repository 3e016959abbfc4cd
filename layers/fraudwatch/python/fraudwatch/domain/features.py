"""The one definition of every feature, used by the Lambda and by training alike.

`features(profile, tx)` describes a transaction against the profile *before* it; `apply(profile, tx)`
then folds the transaction into the profile. Training replays history through these two functions, so
offline and online features are equal by construction (and the parity test checks it).

Windows are exact and half-open: a previous transaction at time `e` counts in the window of length W
of a transaction at time `t` when `t - W < e <= t`, so one exactly 24 h earlier is out.

Undefined values are NaN, which XGBoost treats as missing: the spread-based features of a user's first
transaction, and the time since the previous one.

Late records (older than the profile's newest) follow one rule: they are scored against the profile as
it is (their windows count only what is at or before them; `seconds_since_last` is 0), then inserted
in time order; the profile's newest time never moves backwards.
"""

from __future__ import annotations

import math
from bisect import bisect_right

from fraudwatch.domain.profile import MAX_CATEGORIES, MAX_MERCHANTS, MAX_RECENT, UserProfile
from fraudwatch.domain.transaction import Transaction

HOUR = 3600.0
DAY = 86400.0
NIGHT_END_HOUR = 6
MIN_SPREAD = 1.0
"""Floor of the amount spread, so a user who always pays the same amount has a finite z-score."""

FEATURE_NAMES: tuple[str, ...] = (
    "amount",
    "amount_zscore",
    "amount_to_mean",
    "velocity_1h",
    "velocity_24h",
    "spend_24h",
    "hour_of_day",
    "is_night",
    "seconds_since_last",
    "is_new_category",
    "is_new_merchant",
    "history_length",
)

NAN = float("nan")


def features(profile: UserProfile, tx: Transaction) -> tuple[float, ...]:
    """The features of `tx` given the profile before it, in FEATURE_NAMES order."""
    t = tx.epoch
    epochs = profile.recent_epochs
    end = bisect_right(epochs, t)
    start_24h = bisect_right(epochs, t - DAY, 0, end)
    start_1h = bisect_right(epochs, t - HOUR, start_24h, end)
    n = profile.count
    if n:
        spread = max(math.sqrt(profile.m2 / n), MIN_SPREAD)
        zscore = (tx.amount - profile.mean) / spread
        to_mean = tx.amount / profile.mean
    else:
        zscore = to_mean = NAN
    last = profile.last_epoch
    return (
        tx.amount,
        zscore,
        to_mean,
        float(end - start_1h),
        float(end - start_24h),
        math.fsum(profile.recent_amounts[start_24h:end]),
        float(tx.local_hour),
        1.0 if tx.local_hour < NIGHT_END_HOUR else 0.0,
        NAN if last is None else max(t - last, 0.0),
        0.0 if tx.category in profile.categories else 1.0,
        0.0 if tx.merchant_id in profile.merchants else 1.0,
        float(n),
    )


def apply(profile: UserProfile, tx: Transaction) -> None:
    """Fold `tx` into the profile (in place), keeping every bound of the profile."""
    profile.count += 1
    delta = tx.amount - profile.mean
    profile.mean += delta / profile.count
    profile.m2 += delta * (tx.amount - profile.mean)

    epochs, amounts = profile.recent_epochs, profile.recent_amounts
    if not epochs or tx.epoch >= epochs[-1]:
        epochs.append(tx.epoch)
        amounts.append(tx.amount)
    else:
        at = bisect_right(epochs, tx.epoch)
        epochs.insert(at, tx.epoch)
        amounts.insert(at, tx.amount)
    newest = epochs[-1]
    drop = max(bisect_right(epochs, newest - DAY), len(epochs) - MAX_RECENT)
    if drop > 0:
        del epochs[:drop]
        del amounts[:drop]
    profile.last_epoch = newest

    _touch(profile.categories, tx.category, MAX_CATEGORIES)
    _touch(profile.merchants, tx.merchant_id, MAX_MERCHANTS)


def _touch(recent: dict[str, None], key: str, bound: int) -> None:
    """Move `key` to the most recent end of an insertion-ordered dict of at most `bound` keys."""
    recent.pop(key, None)
    recent[key] = None
    if len(recent) > bound:
        del recent[next(iter(recent))]
