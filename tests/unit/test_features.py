"""The one feature definition, on hand-computed cases, through the training job's replay."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pandas as pd
import pytest

from fraudwatch.domain.features import (
    DAY,
    FEATURE_NAMES,
    HOUR,
    LABEL_FEATURES,
    MERCHANT_FEATURES,
    NEW_CARD_DAYS,
    NO_MERCHANT,
    activity_features,
    apply,
    apply_label,
    day_activity,
    features,
)
from fraudwatch.domain.label import Label, label_from_mapping
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.transaction import Transaction, transaction_from_mapping
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
        "amount_to_mean_7d": NAN,
        "merchant_labels_1d": 0.0,
        "merchant_fraud_rate_1d": NAN,
        "merchant_labels_7d": 0.0,
        "merchant_fraud_rate_7d": NAN,
        "merchant_labels_30d": 0.0,
        "merchant_fraud_rate_30d": NAN,
        "merchant_payments_1d": 0.0,
        "merchant_payments_to_mean_30d": NAN,
        "merchant_new_card_share_1d": NAN,
        "merchant_new_card_share_7d": NAN,
        "merchant_new_card_share_30d": NAN,
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


def differing(a: tuple[float, ...], b: tuple[float, ...]) -> list[str]:
    """The names of the features that differ between two rows."""
    return [name for name, x, y in zip(FEATURE_NAMES, a, b, strict=True) if not same(x, y)]


def parsed(n: int, timestamp: str, amount: float = 10.0, **kw: str) -> Transaction:
    return transaction_from_mapping(tx(n, timestamp, amount, **kw))


def known(n: int, labelled_at: str, is_fraud: bool, merchant: str = "m1") -> Label:
    return label_from_mapping(
        {"transaction_id": f"t{n}", "merchant_id": merchant, "is_fraud": is_fraud, "labelled_at": labelled_at}
    )


def described(profile: UserProfile, merchant: MerchantProfile | None, t: Transaction) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, features(profile, merchant, t), strict=True))


def folded(*history: Transaction) -> UserProfile:
    profile = UserProfile("u1")
    for t in history:
        apply(profile, t)
    return profile


def day_of(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp() // DAY)


def test_long_windows_are_the_whole_utc_days_before_the_transactions_day():
    profile = folded(
        parsed(1, "2025-12-20T12:00:00+00:00", 1000.0),  # 31 days before: out of both
        parsed(2, "2025-12-21T00:00:00+00:00", 300.0),  # 30 days before, at midnight: in the 30 days
        parsed(3, "2026-01-12T23:59:59+00:00", 200.0),  # 8 days before: out of the 7 days, in the 30
        parsed(4, "2026-01-13T00:00:00+00:00", 10.0),  # 7 days before, at midnight: in the 7 days
        parsed(5, "2026-01-19T23:59:59+00:00", 30.0),  # the day before
    )
    kept = [row[0] for row in profile.days]
    assert day_of("2025-12-20T12:00:00+00:00") in kept  # kept, so the window is what leaves it out
    row = described(profile, None, parsed(6, "2026-01-20T15:00:00+00:00"))
    assert (row["user_count_7d"], row["user_mean_amount_7d"]) == (2.0, (10.0 + 30.0) / 2)
    assert (row["user_count_30d"], row["user_mean_amount_30d"]) == (4.0, (300.0 + 200.0 + 10.0 + 30.0) / 4)


def test_long_windows_leave_out_the_transactions_own_day():
    profile = folded(
        parsed(1, "2026-01-19T12:00:00+00:00", 10.0),
        parsed(2, "2026-01-20T00:00:00+00:00", 50.0),
        parsed(3, "2026-01-20T09:00:00+00:00", 70.0),
    )
    row = described(profile, None, parsed(4, "2026-01-20T15:00:00+00:00"))
    assert row["velocity_24h"] == 2.0  # the 24 h window sees the same day's two
    assert (row["user_count_7d"], row["user_mean_amount_7d"]) == (1.0, 10.0)
    assert (row["user_count_30d"], row["user_mean_amount_30d"]) == (1.0, 10.0)


def test_amount_to_mean_7d_is_the_amount_against_the_weeks_mean_of_whole_days():
    profile = folded(
        parsed(1, "2026-01-12T12:00:00+00:00", 900.0),  # 8 days before: not in the week
        parsed(2, "2026-01-14T12:00:00+00:00", 20.0),
        parsed(3, "2026-01-19T12:00:00+00:00", 60.0),
        parsed(4, "2026-01-20T09:00:00+00:00", 1000.0),  # the payment's own day: not in the week
    )
    row = described(profile, None, parsed(5, "2026-01-20T15:00:00+00:00", 200.0))
    assert row["amount_to_mean_7d"] == 200.0 / ((20.0 + 60.0) / 2)
    assert row["amount_to_mean"] != row["amount_to_mean_7d"]  # the lifetime mean reads all four


def test_amount_to_mean_7d_is_undefined_without_a_weeks_mean():
    quiet = folded(parsed(1, "2026-01-10T12:00:00+00:00", 30.0))  # 10 days before
    row = described(quiet, None, parsed(2, "2026-01-20T15:00:00+00:00", 50.0))
    assert math.isnan(row["amount_to_mean_7d"])  # no payment in the week
    checks = folded(parsed(1, "2026-01-18T12:00:00+00:00", 0.0), parsed(2, "2026-01-19T12:00:00+00:00", 0.0))
    row = described(checks, None, parsed(3, "2026-01-20T15:00:00+00:00", 50.0))
    assert row["user_count_7d"] == 2.0
    assert math.isnan(row["amount_to_mean_7d"])  # only zero-amount card checks: no mean to compare with


def test_long_windows_use_utc_days_not_the_cards_local_days():
    profile = folded(
        parsed(1, "2026-01-20T00:30:00+02:00", 10.0),  # 19 January in UTC: counted
        parsed(2, "2026-01-19T23:30:00-02:00", 20.0),  # 20 January in UTC: the same day, not counted
    )
    row = described(profile, None, parsed(3, "2026-01-20T09:00:00+00:00"))
    assert (row["user_count_7d"], row["user_mean_amount_7d"]) == (1.0, 10.0)


def test_a_label_counts_in_the_day_it_became_known():
    merchant = MerchantProfile("m1")
    apply_label(merchant, known(1, "2026-01-20T10:00:00+00:00", True))
    apply_label(merchant, known(2, "2026-01-20T23:30:00-05:00", False))  # 21 January in UTC
    apply_label(merchant, known(3, "2026-01-20T18:00:00+00:00", False))
    assert merchant.days == [
        [day_of("2026-01-20T00:00:00+00:00"), 2, 1],
        [day_of("2026-01-21T00:00:00+00:00"), 1, 0],
    ]


def test_a_label_is_seen_from_the_next_utc_midnight_not_the_same_day():
    merchant = MerchantProfile("m1")
    for n, is_fraud in enumerate((True, True, False)):
        apply_label(merchant, known(n, "2026-01-20T10:00:00+00:00", is_fraud))
    profile = UserProfile("u1")
    same_day = described(profile, merchant, parsed(10, "2026-01-20T23:59:59+00:00"))
    next_day = described(profile, merchant, parsed(11, "2026-01-21T00:00:00+00:00"))
    assert same_day["merchant_labels_1d"] == 0.0
    assert math.isnan(same_day["merchant_fraud_rate_1d"])
    assert (next_day["merchant_labels_1d"], next_day["merchant_fraud_rate_1d"]) == (3.0, 2 / 3)


def test_merchant_windows_are_the_1_7_and_30_whole_days_before():
    merchant = MerchantProfile("m1")
    # Applied newest first: late labels count in their own day.
    for n, (stamp, is_fraud) in enumerate(
        [
            ("2026-01-19T08:00:00+00:00", True),  # the day before: in all three
            ("2026-01-18T08:00:00+00:00", False),  # 2 days before: in 7 and 30
            ("2026-01-13T00:00:00+00:00", True),  # 7 days before: in 7 and 30
            ("2026-01-12T23:59:59+00:00", False),  # 8 days before: in 30
            ("2025-12-21T00:00:00+00:00", True),  # 30 days before: in 30
            ("2025-12-20T23:00:00+00:00", False),  # 31 days before: in none
        ]
    ):
        apply_label(merchant, known(n, stamp, is_fraud))
    kept = [row[0] for row in merchant.days]
    assert day_of("2025-12-20T23:00:00+00:00") in kept  # kept, so the window is what leaves it out
    row = described(UserProfile("u1"), merchant, parsed(10, "2026-01-20T15:00:00+00:00"))
    assert [row[name] for name in LABEL_FEATURES] == [1.0, 1.0, 3.0, 2 / 3, 5.0, 3 / 5]


def test_a_merchant_without_labels_before_the_day_has_counts_of_zero_and_no_rate():
    labelled_today = MerchantProfile("m1")
    apply_label(labelled_today, known(1, "2026-01-20T01:00:00+00:00", True))
    t = parsed(2, "2026-01-20T15:00:00+00:00")
    profile = UserProfile("u1")
    for merchant in (None, MerchantProfile("m1"), labelled_today):
        values = features(profile, merchant, t)[len(FEATURE_NAMES) - len(MERCHANT_FEATURES) :]
        assert all(same(a, b) for a, b in zip(values, NO_MERCHANT, strict=True)), merchant
    assert [same(v, NAN) for v in NO_MERCHANT] == [False, True] * 3 + [False, True, True, True, True]


@pytest.mark.parametrize("gap_hours", [2.0, 30.0], ids=["busy", "sparse"])
@pytest.mark.parametrize("seed", range(3))
def test_the_cached_windows_never_change_a_feature(seed: int, gap_hours: float):
    """Features on profiles carrying their cache equal those on fresh copies, through late records.

    Records come in small runs at one merchant and moment (a terminal uploading what it held offline,
    a batch of chargebacks), up to 7 days late, so late days without a bucket yet get several records
    in a row.
    """
    rng = random.Random(seed)
    clock = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    profile = UserProfile("u1")
    merchants = {m: MerchantProfile(m) for m in ("m1", "m2", "m3")}
    hits = {"user": 0, "merchant": 0}
    n = 0
    while n < 1500:
        clock += rng.expovariate(1 / (gap_hours * HOUR))
        late = rng.uniform(0, 7 * DAY) if rng.random() < 0.3 else 0.0
        merchant = merchants[rng.choice(list(merchants))]
        for _ in range(rng.choice((1, 1, 2, 3))):
            n += 1
            stamp = datetime.fromtimestamp(clock - late + n, UTC).isoformat()
            if rng.random() < 0.3:
                apply_label(merchant, known(n, stamp, rng.random() < 0.4, merchant.merchant_id))
                continue
            t = parsed(n, stamp, round(rng.uniform(1, 500), 2), merchant=merchant.merchant_id)
            day = int(t.epoch // DAY)
            hits["user"] += profile.windows is not None and profile.windows[0] == day
            hits["merchant"] += merchant.windows is not None and merchant.windows[0] == day
            cached = features(profile, merchant, t)
            fresh = features(
                UserProfile.from_json("u1", profile.to_json()),
                MerchantProfile.from_json(merchant.merchant_id, merchant.to_json()),
                t,
            )
            assert differing(cached, fresh) == [], n
            apply(profile, t)
    # The cache was used, so the comparison means something.
    assert hits["user"] > 50
    assert hits["merchant"] > 50


def test_a_late_record_that_makes_old_buckets_go_refreshes_the_cached_windows():
    """A late record opening a new day can make the oldest buckets go; the cached windows must follow."""
    first = datetime(2026, 1, 1, tzinfo=UTC).timestamp()

    def stamp(day: int) -> str:
        return datetime.fromtimestamp(first + day * DAY + 12 * HOUR, UTC).isoformat()

    # 31 day buckets each, the oldest more than KEPT_DAYS before the newest; day 29 has none yet.
    days = [*range(29), 30, 31]
    profile = folded(*(parsed(day, stamp(day), 1000.0 if day == 0 else 10.0) for day in days))
    merchant = MerchantProfile("m1")
    for day in days:
        apply_label(merchant, known(day, stamp(day), is_fraud=day == 0))
    late, later = parsed(100, stamp(29)), parsed(101, stamp(29))
    features(profile, merchant, late)  # caches day 29's windows, which read day 0

    apply(profile, late)  # a 32nd bucket: the oldest go
    apply_label(merchant, known(100, stamp(29), True))
    oldest = int(first // DAY)
    assert oldest not in [row[0] for row in profile.days]
    assert oldest not in [row[0] for row in merchant.days]
    fresh_profile = UserProfile.from_json("u1", profile.to_json())
    fresh_merchant = MerchantProfile.from_json("m1", merchant.to_json())
    assert differing(features(profile, merchant, later), features(fresh_profile, fresh_merchant, later)) == []


def test_a_merchants_payments_count_from_the_next_midnight_with_the_cards_new_to_it():
    rows = replay(
        tx(1, "2026-01-05T10:00:00+00:00", 10.0, user="u1"),
        tx(2, "2026-01-05T11:00:00+00:00", 10.0, user="u1"),
        tx(3, "2026-01-05T12:00:00+00:00", 10.0, user="u2"),
        tx(4, "2026-01-05T23:59:59+00:00", 10.0, user="u3", merchant="m2"),
        tx(5, "2026-01-06T00:00:00+00:00", 10.0, user="u1"),  # m1 the next day: u1 is not new any more
        tx(6, "2026-01-06T09:00:00+00:00", 10.0, user="u4"),
        tx(7, "2026-01-07T09:00:00+00:00", 10.0, user="u5"),
    )
    assert [row["merchant_payments_1d"] for row in rows] == [0.0, 0.0, 0.0, 0.0, 3.0, 3.0, 2.0]
    assert rows[2]["merchant_payments_to_mean_30d"] != rows[2]["merchant_payments_to_mean_30d"]  # NaN
    # The 30 days before Jan 6 hold 3 payments: yesterday's 3 against a mean of 3 / 30 a day.
    assert rows[4]["merchant_payments_to_mean_30d"] == 30.0
    assert rows[4]["merchant_new_card_share_1d"] == 1.0  # u1 and u2, both new to m1 on Jan 5
    # Jan 6: u1 (seen the day before) and u4 (new); over the 7 days: 3 new of 4 card-days.
    assert (rows[6]["merchant_new_card_share_1d"], rows[6]["merchant_new_card_share_7d"]) == (0.5, 3 / 4)
    assert rows[6]["merchant_payments_to_mean_30d"] == 2 * 30 / 5


def test_a_card_is_new_to_a_merchant_again_after_30_days_without_paying_there():
    last_seen: dict[str, int] = {}
    assert day_activity(["a", "b", "a"], last_seen, 100) == [3, 2, 2]
    assert day_activity(["a"], last_seen, 100 + NEW_CARD_DAYS) == [1, 1, 0]  # 30 days after: still known
    assert day_activity(["b"], last_seen, 101 + NEW_CARD_DAYS) == [1, 1, 1]  # 31 days after: new again
    assert last_seen == {"a": 100 + NEW_CARD_DAYS, "b": 101 + NEW_CARD_DAYS}


def test_a_days_activity_does_not_depend_on_the_order_of_its_payments():
    cards = [f"c{i % 7}" for i in range(40)]
    before = {"c1": 90, "c2": 60, "c3": 99}
    counted = day_activity(cards, dict(before), 100)
    for seed in range(5):
        shuffled = random.Random(seed).sample(cards, len(cards))
        assert day_activity(shuffled, dict(before), 100) == counted == [40, 7, 5]


def test_merchant_activity_windows_are_the_1_7_and_30_whole_days_before():
    activity = {
        69: [50, 40, 40],  # 31 days before: in none
        70: [4, 4, 2],  # 30 days before: in the 30
        92: [3, 2, 1],  # 8 days before: in the 30
        93: [5, 4, 1],  # 7 days before: in the 7 and the 30
        99: [6, 3, 3],  # the day before: in all
        100: [9, 9, 9],  # the day itself: in none
    }
    payments, to_mean, new_1d, new_7d, new_30d = activity_features(activity, 100)
    assert (payments, to_mean) == (6.0, 6 * 30 / 18)
    assert (new_1d, new_7d, new_30d) == (1.0, 4 / 7, 7 / 13)
    assert [same(v, NAN) for v in activity_features(activity, 69)] == [False, True, True, True, True]


def exactly(row: dict[str, float]) -> dict[str, str]:
    """Features compared bit for bit, NaN equal to NaN."""
    return {name: repr(value) for name, value in row.items()}


def test_a_stored_profile_reads_its_older_day_rows_only_when_a_record_needs_them():
    """The rows before the last stay the stored text, and the stored windows serve, for records of the last
    row's day; a record of a later day (or an earlier one) reads them, with the features of a profile that
    was never stored."""
    history = [parsed(n, f"2026-01-{n:02d}T12:00:00+00:00", 10.0 * n) for n in range(1, 21)]
    kept = folded(*history)
    described(kept, None, parsed(21, "2026-01-20T18:00:00+00:00"))  # the windows of 20 January, cached
    stored = UserProfile.from_json("u1", kept.to_json())
    assert stored.older_days is not None
    assert len(stored.days) == 1

    same_day = parsed(22, "2026-01-20T20:00:00+00:00", 5.0)
    assert exactly(described(stored, None, same_day)) == exactly(described(kept, None, same_day))
    apply(stored, same_day)
    apply(kept, same_day)
    assert stored.older_days is not None  # 19 days of rows never parsed
    stored = UserProfile.from_json("u1", stored.to_json())

    for t in (parsed(23, "2026-01-21T09:00:00+00:00", 7.0), parsed(24, "2026-01-03T09:00:00+00:00", 9.0)):
        assert exactly(described(stored, None, t)) == exactly(described(kept, None, t))
        apply(stored, t)
        apply(kept, t)
        assert stored.older_days is None
    assert stored == kept
    assert stored.all_days() == kept.days


def test_stored_windows_come_back_with_their_undefined_means():
    profile = folded(parsed(1, "2026-01-01T12:00:00+00:00"))
    later = parsed(2, "2026-03-01T12:00:00+00:00")
    before = described(profile, None, later)  # nothing in the 30 days before: NaN means
    copy = UserProfile.from_json("u1", profile.to_json())
    assert copy.windows is not None
    assert profile.windows is not None
    assert copy.windows[0] == profile.windows[0]
    assert [math.isnan(v) for v in copy.windows[1]] == [False, True, False, True]
    assert exactly(described(copy, None, later)) == exactly(before)
