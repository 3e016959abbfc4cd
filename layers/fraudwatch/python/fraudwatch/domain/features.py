"""The one definition of every feature, used by the Lambda and by training alike.

`features(profile, merchant, tx)` describes a transaction against its user's profile *before* it and
its merchant's profile; `apply(profile, tx)` then folds the transaction into the user's profile,
`apply_label(merchant, label)` folds a fraud label into the merchant's, and `apply_activity` sets a
day's count of the merchant's payments (`day_activity`; online it comes from the daily count of
`domain.activity`, offline the replay counts the file's payments). Training and backtests replay
history through these functions, so offline and online features are equal by construction (and the
parity test checks it).

Windows are exact and half-open: a previous transaction at time `e` counts in the window of length W
of a transaction at time `t` when `t - W < e <= t`, so one exactly 24 h earlier is out.

The long windows (the user's 7 and 30 days, the merchant's 1, 7 and 30 days) are made of whole UTC
days: the N days before the transaction's own day. They count only what was known by the midnight
before the transaction (a label counts by the day it became known, a merchant's payments by the day
they were made), so they change only at midnight and are computed once per profile and day.

Undefined values are NaN, which XGBoost treats as missing: the spread-based features of a user's first
transaction, and the time since the previous one.

Late records (older than the profile's newest) follow one rule: they are scored against the profile as
it is (their windows count only what is at or before them; `seconds_since_last` is 0), then inserted
in time order; the profile's newest time never moves backwards.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable

from fraudwatch.domain.label import Label
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.profile import KEPT_DAYS, MAX_RECENT, DayRows, UserProfile, day_row
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
    "user_count_7d",
    "user_mean_amount_7d",
    "user_count_30d",
    "user_mean_amount_30d",
    "amount_to_mean_7d",
    "merchant_labels_1d",
    "merchant_fraud_rate_1d",
    "merchant_labels_7d",
    "merchant_fraud_rate_7d",
    "merchant_labels_30d",
    "merchant_fraud_rate_30d",
    "merchant_payments_1d",
    "merchant_payments_to_mean_30d",
    "merchant_new_card_share_1d",
    "merchant_new_card_share_7d",
    "merchant_new_card_share_30d",
)
MERCHANT_FEATURES: tuple[str, ...] = tuple(name for name in FEATURE_NAMES if name.startswith("merchant_"))
"""The merchant's features (the merchant risk): LABEL_FEATURES, then ACTIVITY_FEATURES."""
ACTIVITY_FEATURES: tuple[str, ...] = tuple(
    name for name in MERCHANT_FEATURES if name.startswith(("merchant_payments_", "merchant_new_card_"))
)
"""The merchant's own payments, day by day: known the next midnight, without waiting for labels."""
LABEL_FEATURES: tuple[str, ...] = tuple(name for name in MERCHANT_FEATURES if name not in ACTIVITY_FEATURES)
"""The merchant's fraud labels, which come back days after the payments."""
NEW_CARD_DAYS = KEPT_DAYS
"""A card is new to a merchant on a day when it has not paid there on the NEW_CARD_DAYS days before."""

NAN = float("nan")


def features(profile: UserProfile, merchant: MerchantProfile | None, tx: Transaction) -> tuple[float, ...]:
    """The features of `tx` given its user's profile before it and its merchant's, in FEATURE_NAMES order."""
    return user_features(profile, tx) + merchant_features(merchant, int(tx.epoch // DAY))


def user_features(profile: UserProfile, tx: Transaction) -> tuple[float, ...]:
    """The features of `tx` given its user's profile before it: FEATURE_NAMES up to the merchant's."""
    t = tx.epoch
    day = int(t // DAY)
    epochs = profile.recent_epochs
    end = bisect_right(epochs, t)
    start_24h = bisect_right(epochs, t - DAY, 0, end)
    start_1h = bisect_right(epochs, t - HOUR, start_24h, end)
    n = profile.count
    if n:
        spread = max(math.sqrt(profile.m2 / n), MIN_SPREAD)
        zscore = (tx.amount - profile.mean) / spread
        # A user who has only paid 0 (card checks) has no mean to compare with.
        to_mean = tx.amount / profile.mean if profile.mean else NAN
    else:
        zscore = to_mean = NAN
    last = profile.last_epoch
    windows = _user_windows(profile, day)
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
        *windows,
        amount_to_mean_7d(tx.amount, windows[1]),
    )


def amount_to_mean_7d(amount: float, mean_7d: float) -> float:
    """The amount against the card's mean amount over the 7 whole days before (NaN: no payment in them,
    or only payments of 0).

    The model has both numbers, but a tree draws their ratio only with many splits. Kept by measurement
    on both histories (docs/backtest.md, "The amount against the card's week", which also says how
    little of the gain measured there is the feature's own).
    """
    return amount / mean_7d if mean_7d else NAN


NO_ACTIVITY = (0.0, NAN, NAN, NAN, NAN)
"""The activity features of a merchant without payments in the 30 days before."""
NO_MERCHANT = (0.0, NAN, 0.0, NAN, 0.0, NAN, *NO_ACTIVITY)
"""The merchant features of a merchant without labels nor payments."""


def _user_windows(profile: UserProfile, day: int) -> tuple[float, ...]:
    """Transactions and mean amount over the 7 and 30 whole days before `day`."""
    cached = profile.windows
    if cached is not None and cached[0] == day:
        return cached[1]
    values = _window_means(profile.all_days(), day)[2:]
    profile.windows = (day, values)
    return values


def merchant_features(merchant: MerchantProfile | None, day: int) -> tuple[float, ...]:
    """The MERCHANT_FEATURES of a transaction of UTC day `day`: labels known and the share of them that
    are fraud, over the 1, 7 and 30 whole days before it (NO_MERCHANT for a merchant without a profile).

    They read only the labels known before the day's midnight, so all of a day's transactions share them.
    """
    if merchant is None:
        return NO_MERCHANT
    cached = merchant.windows
    if cached is not None and cached[0] == day:
        return cached[1]
    values = _window_means(merchant.days, day) + activity_features(merchant.activity, day)
    merchant.windows = (day, values)
    return values


def _window_means(rows: DayRows, day: int) -> tuple[float, ...]:
    """From day rows ([day, records, sum of values]): the records, and the mean of their values (NaN: no
    record), over the day before `day`, the 7 days before it and the 30 days before it, in that order.
    A user's are transactions and their amounts; a merchant's, labels and their frauds (the fraud rate)."""
    records_1 = sum_1 = records_7 = sum_7 = records_30 = sum_30 = 0.0
    yesterday, week, month = day - 1, day - 7, day - 30
    for bucket, records, total in rows:
        if month <= bucket < day:
            records_30 += records
            sum_30 += total
            if bucket >= week:
                records_7 += records
                sum_7 += total
                if bucket == yesterday:
                    records_1 += records
                    sum_1 += total
    return (
        records_1,
        sum_1 / records_1 if records_1 else NAN,
        records_7,
        sum_7 / records_7 if records_7 else NAN,
        records_30,
        sum_30 / records_30 if records_30 else NAN,
    )


def activity_features(activity: dict[int, list[int]], day: int) -> tuple[float, ...]:
    """The ACTIVITY_FEATURES of UTC day `day`: the merchant's payments of the day before against its 30
    days, and the share of its cards that were new to it over the 1, 7 and 30 days before.

    `activity` holds a merchant's `day_activity` by UTC day; only the 30 whole days before `day` are read.
    """
    yesterday_payments = month_payments = 0
    cards_1 = new_1 = cards_7 = new_7 = cards_30 = new_30 = 0
    yesterday, week, month = day - 1, day - 7, day - 30
    for bucket, (payments, distinct, fresh) in activity.items():
        if month <= bucket < day:
            month_payments += payments
            cards_30 += distinct
            new_30 += fresh
            if bucket >= week:
                cards_7 += distinct
                new_7 += fresh
                if bucket == yesterday:
                    yesterday_payments += payments
                    cards_1 += distinct
                    new_1 += fresh
    if not month_payments:
        return NO_ACTIVITY
    return (
        float(yesterday_payments),
        yesterday_payments * 30 / month_payments,
        new_1 / cards_1 if cards_1 else NAN,
        new_7 / cards_7 if cards_7 else NAN,
        new_30 / cards_30 if cards_30 else NAN,
    )


def day_activity(cards: Iterable[str], last_seen: dict[str, int], day: int) -> list[int]:
    """A merchant's payments of UTC day `day`, by the cards that made them: [payments, cards, new cards].

    A card is new when `last_seen` (card → the last day before `day` it paid at the merchant, updated
    here to `day`) has no day of it in the NEW_CARD_DAYS days before. Counts, so the order of the
    payments does not matter; days are counted in order, `day` after every day in `last_seen`.
    """
    payments = 0
    seen: set[str] = set()
    fresh = 0
    for card in cards:
        payments += 1
        if card in seen:
            continue
        seen.add(card)
        before = last_seen.get(card)
        if before is None or before < day - NEW_CARD_DAYS:
            fresh += 1
        last_seen[card] = day
    return [payments, len(seen), fresh]


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

    profile.categories.touch(tx.category)
    profile.merchants.touch(tx.merchant_id)

    _count_in_day(profile, int(tx.epoch // DAY), tx.amount)


def apply_label(merchant: MerchantProfile, label: Label) -> None:
    """Count a label (in place) in the merchant's bucket of the day it became known."""
    _count_in_day(merchant, int(label.epoch // DAY), int(label.is_fraud))


def apply_activity(merchant: MerchantProfile, day: int, counts: tuple[int, int, int]) -> None:
    """Set (in place) the merchant's payments of UTC `day`: [payments, cards, new cards].

    Set, never added: the same day counted again leaves what one count leaves. Once there are more
    than KEPT_DAYS + 1 days, those more than KEPT_DAYS days before the newest go, as label buckets do.
    """
    activity = merchant.activity
    activity[day] = list(counts)
    if len(activity) > KEPT_DAYS + 1:
        oldest_kept = max(activity) - KEPT_DAYS
        for old in [kept for kept in activity if kept < oldest_kept]:
            del activity[old]
    merchant.windows = None


def _count_in_day(owner: UserProfile | MerchantProfile, day: int, value: int | float) -> None:
    """Add one record of `value` to the owner's row of `day` ([day, records, sum of values]): a user's
    amount, or a merchant's label (1 when fraud), whose counts stay integers (`profile.DayRows`).

    Once there are more than KEPT_DAYS + 1 rows, those more than KEPT_DAYS days before the newest
    go: every window reads at most the KEPT_DAYS days before a transaction's day, so such a bucket is
    read only by a record that late (which counts what remains). The cached windows are dropped when
    a bucket goes (they may have read it) or when another day than theirs changes; a change to their
    own day is one they never read.
    """
    days = owner.days
    if days and days[-1][0] == day:  # nearly every record: no older row read
        row: list[int | float] | None = days[-1]
    else:
        row = day_row(owner.all_days(), day)
    if row is None:
        days.append([day, 1, value])
        if len(days) > KEPT_DAYS + 1:
            oldest_kept = max(row[0] for row in days) - KEPT_DAYS
            days[:] = [row for row in days if row[0] >= oldest_kept]
            owner.windows = None
    else:
        row[1] += 1
        row[2] += value
    if owner.windows is not None and owner.windows[0] != day:
        owner.windows = None
