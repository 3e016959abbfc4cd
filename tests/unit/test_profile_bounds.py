"""The profile's bounds (documented in profile.py) hold for the hottest user: 10,000 transactions a day."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from fraudwatch.domain.features import DAY, FEATURE_NAMES, apply, apply_label, features
from fraudwatch.domain.label import Label
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.profile import (
    KEPT_DAYS,
    MAX_APPLIED_IDS,
    MAX_CATEGORIES,
    MAX_MERCHANTS,
    MAX_RECENT,
    UserProfile,
)
from fraudwatch.domain.transaction import Transaction

ITEM_LIMIT = 400 * 1024  # DynamoDB's item size limit
HOT = 10_000
START = datetime(2026, 11, 30, tzinfo=UTC)
SEQUENCE = 49_590_338_271_490_256_608_559_692_538_361_571_033_948_521_123_456_789_012
"""A Kinesis sequence number (56 digits) the records here follow from."""


def worst_case_transaction(i: int) -> Transaction:
    """Every string at its longest (64-character ids, 32-character categories), all different."""
    at = START + timedelta(seconds=i * DAY / HOT)
    return Transaction(
        transaction_id=f"tx-{i:07d}-".ljust(64, "t"),
        user_id="user-hot",
        merchant_id=f"m-{i:07d}-".ljust(64, "m"),
        amount=1234.5678 + i / 7,  # many digits in the JSON
        currency="USD",
        timestamp=at.isoformat(),
        category=f"c{i:04d}_".ljust(32, "c"),
        epoch=at.timestamp() + 0.123456,
        local_hour=at.hour,
    )


def hot_profile(count: int = HOT, shards: int = 1) -> tuple[UserProfile, list[int]]:
    """A profile after `count` worst-case transactions in a day; its JSON size after each hundred."""
    profile = UserProfile("user-hot")
    sizes = []
    for i in range(count):
        tx = worst_case_transaction(i)
        apply(profile, tx)
        shard = f"shardId-{i % shards:012d}"
        profile.mark_applied(tx.transaction_id, shard, str(SEQUENCE + i))
        if i % 100 == 99:
            sizes.append(len(profile.to_json().encode()))
    return profile, sizes


def test_ten_thousand_transactions_in_a_day_keep_every_bound():
    profile, _ = hot_profile()
    assert profile.count == HOT
    assert len(profile.recent_epochs) == len(profile.recent_amounts) == MAX_RECENT
    assert profile.recent_epochs == sorted(profile.recent_epochs)
    assert profile.last_epoch is not None
    assert profile.recent_epochs[0] > profile.last_epoch - DAY  # the window kept is the newest
    assert len(profile.categories) == MAX_CATEGORIES
    assert len(profile.merchants) == MAX_MERCHANTS
    assert len(profile.applied_ids) == MAX_APPLIED_IDS
    assert next(reversed(profile.merchants)) == worst_case_transaction(HOT - 1).merchant_id


def test_the_worst_case_profile_is_well_under_the_item_limit_and_flat():
    profile, sizes = hot_profile()
    assert max(sizes) < ITEM_LIMIT / 4
    bounded = sizes[MAX_RECENT // 100 :]
    assert max(bounded) - min(bounded) < 0.01 * max(bounded)  # no growth once the bounds are reached
    assert UserProfile.from_json("user-hot", profile.to_json()).to_json() == profile.to_json()


def test_checkpoints_grow_only_with_the_shards_a_user_was_read_from():
    """One checkpoint per shard: resharding adds some, never one per record."""
    profile, _ = hot_profile(count=2_000, shards=4)
    assert len(profile.checkpoints) == 4
    assert len(json.loads(profile.to_json())["cp"]) == 4


def daily(i: int, day: int, user: str = "user-1") -> Transaction:
    at = START + timedelta(days=day, hours=i % 24)
    return Transaction(
        f"tx-{i}", user, "m-1", 10.0 + i, "USD", at.isoformat(), "grocery", at.timestamp(), at.hour
    )


def label_on(i: int, day: int, merchant: str = "m-1") -> Label:
    at = START + timedelta(days=day, hours=i % 24)
    return Label(f"tx-{i}", merchant, i % 3 == 0, at.isoformat(), at.timestamp())


def test_day_buckets_stay_bounded_and_keep_every_day_a_window_reads():
    """Over months of in-order history, the 30-day windows equal a count over the whole history."""
    rng = random.Random(7)
    profile = UserProfile("user-1")
    merchant = MerchantProfile("m-1")
    paid: list[int] = []  # the day of every transaction, in days since START
    labelled: list[tuple[int, bool]] = []
    day = 0
    for i in range(600):
        day += rng.choice((0, 0, 1, 1, 2, 5))  # busy days, quiet weeks: about 200 days in all
        tx = daily(i, day)
        values = dict(zip(FEATURE_NAMES, features(profile, merchant, tx), strict=True))
        frauds = [fraud for d, fraud in labelled if day - 30 <= d < day]
        assert values["user_count_30d"] == sum(day - 30 <= d < day for d in paid)
        assert values["merchant_labels_30d"] == len(frauds)
        if frauds:
            assert values["merchant_fraud_rate_30d"] == sum(frauds) / len(frauds)
        apply(profile, tx)
        paid.append(day)
        if rng.random() < 0.5:
            label = label_on(i, day)
            apply_label(merchant, label)
            labelled.append((day, label.is_fraud))
        assert len(profile.days) <= KEPT_DAYS + 1
        assert len(merchant.days) <= KEPT_DAYS + 1
    assert day > 4 * KEPT_DAYS


def test_day_buckets_survive_the_json_round_trip():
    profile = UserProfile("user-1")
    merchant = MerchantProfile("m-1")
    for i in range(90):
        apply(profile, daily(i, i // 2))
        apply_label(merchant, label_on(i, i // 3))
    user_copy = UserProfile.from_json("user-1", profile.to_json())
    merchant_copy = MerchantProfile.from_json("m-1", merchant.to_json())
    assert user_copy == profile
    assert merchant_copy == merchant
    assert user_copy.days == profile.days
    assert merchant_copy.days == merchant.days
    assert all(isinstance(row[0], int) for row in user_copy.days)
    assert all(isinstance(row[0], int) for row in merchant_copy.days)


def test_a_busy_merchant_profile_stays_small_and_flat():
    """A year of labels, a hundred a day, with the longest ids: the merchant profile stops growing."""
    merchant = MerchantProfile("m".ljust(64, "m"))
    sizes = []
    for i in range(36_500):
        at = START + timedelta(seconds=i * DAY / 100)
        label = Label(
            f"tx-{i:07d}-".ljust(64, "t"), merchant.merchant_id, i % 7 == 0, at.isoformat(), at.timestamp()
        )
        apply_label(merchant, label)
        merchant.mark_applied(label.transaction_id, "shardId-000000000000", str(SEQUENCE + i))
        if i % 100 == 99:
            sizes.append(len(merchant.to_json().encode()))
    assert len(merchant.days) <= KEPT_DAYS + 1
    assert max(sizes) < ITEM_LIMIT / 40
    settled = sizes[2 * KEPT_DAYS :]
    assert max(settled) - min(settled) < 0.05 * max(settled)
