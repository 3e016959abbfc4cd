"""The one feature definition, on hand-computed cases, through the training job's replay."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from fraudwatch.domain.features import FEATURE_NAMES, apply, features
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.transaction import transaction_from_mapping
from training.features import compute_features

NAN = float("nan")


def tx(
    n: int, timestamp: str, amount: float, *, user="u1", merchant="m1", category="grocery"
) -> dict[str, object]:
    return {
        "transaction_id": f"t{n}",
        "user_id": user,
        "merchant_id": merchant,
        "amount": amount,
        "currency": "EUR",
        "timestamp": timestamp,
        "category": category,
    }


def replay(*rows: dict[str, object]) -> list[dict[str, float]]:
    """Offline features of the rows, as one dict per row, in the rows' order."""
    matrix = compute_features(pd.DataFrame(list(rows)))
    return [dict(zip(FEATURE_NAMES, values.tolist(), strict=True)) for values in matrix.values]


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_a_users_first_transaction_has_no_history():
    (first,) = replay(tx(1, "2026-01-05T14:00:00+00:00", 42.5))
    expected = {
        "amount": 42.5,
        "amount_zscore": NAN,
        "amount_to_mean": NAN,
        "velocity_1h": 0.0,
        "velocity_24h": 0.0,
        "spend_24h": 0.0,
        "hour_of_day": 14.0,
        "is_night": 0.0,
        "seconds_since_last": NAN,
        "is_new_category": 1.0,
        "is_new_merchant": 1.0,
        "history_length": 0.0,
        "user_count_7d": 0.0,
        "user_mean_amount_7d": NAN,
        "user_count_30d": 0.0,
        "user_mean_amount_30d": NAN,
        "merchant_labels_1d": 0.0,
        "merchant_fraud_rate_1d": NAN,
        "merchant_labels_7d": 0.0,
        "merchant_fraud_rate_7d": NAN,
        "merchant_labels_30d": 0.0,
        "merchant_fraud_rate_30d": NAN,
    }
    assert set(first) == set(expected)
    assert all(same(first[name], expected[name]) for name in expected), first


def test_one_hour_window_excludes_a_transaction_exactly_one_hour_earlier():
    rows = replay(
        tx(1, "2026-01-05T10:00:00+00:00", 10.0),
        tx(2, "2026-01-05T10:59:59+00:00", 20.0),
        tx(3, "2026-01-05T11:00:00+00:00", 30.0),
    )
    assert rows[1]["velocity_1h"] == 1.0  # 1 s inside the hour
    assert rows[2]["velocity_1h"] == 1.0  # t1 is exactly 1 h earlier: out; t2 is in
    assert rows[2]["velocity_24h"] == 2.0
    assert rows[2]["seconds_since_last"] == 1.0


def test_24_hour_window_excludes_a_transaction_exactly_24_hours_earlier():
    rows = replay(
        tx(1, "2026-01-05T10:00:00+00:00", 10.0),
        tx(2, "2026-01-05T16:00:00+00:00", 20.0),
        tx(3, "2026-01-06T10:00:00+00:00", 30.0),
        tx(4, "2026-01-06T09:59:59.5+00:00", 5.0, user="u2"),
    )
    assert rows[2]["velocity_24h"] == 1.0
    assert rows[2]["spend_24h"] == 20.0
    assert rows[2]["seconds_since_last"] == 18 * 3600.0
    assert rows[2]["history_length"] == 2.0


def test_windows_include_a_transaction_at_the_same_instant():
    rows = replay(
        tx(1, "2026-01-05T10:00:00+00:00", 10.0),
        tx(2, "2026-01-05T10:00:00+00:00", 12.0),
    )
    assert rows[1]["velocity_1h"] == 1.0
    assert rows[1]["spend_24h"] == 10.0
    assert rows[1]["seconds_since_last"] == 0.0


def test_zero_spread_is_floored_so_the_zscore_stays_finite():
    rows = replay(
        tx(1, "2026-01-05T10:00:00+00:00", 10.0),
        tx(2, "2026-01-05T11:00:00+00:00", 10.0),
        tx(3, "2026-01-05T12:00:00+00:00", 10.0),
        tx(4, "2026-01-05T13:00:00+00:00", 12.0),
    )
    assert rows[1]["amount_zscore"] == 0.0
    assert rows[3]["amount_zscore"] == 2.0  # (12 - 10) / max(0, 1)
    assert rows[3]["amount_to_mean"] == pytest.approx(1.2)


def test_zscore_against_the_running_mean_and_spread():
    rows = replay(
        tx(1, "2026-01-05T10:00:00+00:00", 10.0),
        tx(2, "2026-01-05T11:00:00+00:00", 30.0),
        tx(3, "2026-01-05T12:00:00+00:00", 40.0),
    )
    # Before t3: mean 20, population spread sqrt(((10-20)^2 + (30-20)^2) / 2) = 10.
    assert rows[2]["amount_zscore"] == pytest.approx(2.0)
    assert rows[2]["amount_to_mean"] == pytest.approx(2.0)


def test_new_category_and_new_merchant_are_per_user():
    rows = replay(
        tx(1, "2026-01-05T10:00:00+00:00", 10.0, merchant="m1", category="grocery"),
        tx(2, "2026-01-05T11:00:00+00:00", 10.0, merchant="m2", category="grocery"),
        tx(3, "2026-01-05T12:00:00+00:00", 10.0, merchant="m1", category="travel"),
        tx(4, "2026-01-05T12:30:00+00:00", 10.0, merchant="m1", category="travel", user="u2"),
    )
    assert (rows[1]["is_new_category"], rows[1]["is_new_merchant"]) == (0.0, 1.0)
    assert (rows[2]["is_new_category"], rows[2]["is_new_merchant"]) == (1.0, 0.0)
    assert (rows[3]["is_new_category"], rows[3]["is_new_merchant"]) == (1.0, 1.0)


def test_hour_and_night_are_local_to_the_timestamps_offset():
    night, day = replay(
        tx(1, "2026-01-05T02:30:00-05:00", 10.0),  # 07:30 UTC, but 02:30 where the card is used
        tx(2, "2026-01-05T23:15:00+05:30", 10.0, user="u2"),
    )
    assert (night["hour_of_day"], night["is_night"]) == (2.0, 1.0)
    assert (day["hour_of_day"], day["is_night"]) == (23.0, 0.0)


def test_rows_follow_the_file_and_the_replay_follows_time():
    # The file lists the later transaction first; its features must still see the earlier one.
    later, earlier = replay(
        tx(2, "2026-01-05T11:00:00+01:00", 30.0),
        tx(1, "2026-01-05T09:30:00+00:00", 10.0),
    )
    assert earlier["history_length"] == 0.0
    assert later["history_length"] == 1.0
    assert later["seconds_since_last"] == 1800.0


def test_a_late_record_is_scored_on_what_is_at_or_before_it_then_inserted_in_order():
    profile = UserProfile("u1")
    for n, stamp, amount in ((1, "2026-01-05T10:00:00+00:00", 10.0), (2, "2026-01-05T12:00:00+00:00", 20.0)):
        record = transaction_from_mapping(tx(n, stamp, amount))
        apply(profile, record)
    late = transaction_from_mapping(tx(3, "2026-01-05T10:30:00+00:00", 40.0))
    row = dict(zip(FEATURE_NAMES, features(profile, None, late), strict=True))
    assert row["velocity_1h"] == 1.0  # only 10:00; 12:00 is after it
    assert row["velocity_24h"] == 1.0
    assert row["spend_24h"] == 10.0
    assert row["seconds_since_last"] == 0.0  # the profile's newest is later: never negative
    assert row["history_length"] == 2.0
    newest = profile.last_epoch
    apply(profile, late)
    assert profile.last_epoch == newest
    assert profile.recent_amounts == [10.0, 40.0, 20.0]
