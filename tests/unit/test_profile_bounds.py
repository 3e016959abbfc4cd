"""The profile's bounds (documented in profile.py) hold for the hottest user: 10,000 transactions a day."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fraudwatch.domain.features import DAY, apply
from fraudwatch.domain.profile import (
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
        profile.mark_applied(tx.transaction_id, shard, 49_590_338_271_490_256_608_559_692_538_361_571 + i)
        if i % 100 == 99:
            sizes.append(len(profile.to_json().encode()))
    return profile, sizes


def test_ten_thousand_transactions_in_a_day_keep_every_bound():
    profile, _ = hot_profile()
    assert profile.count == HOT
    assert len(profile.recent_epochs) == len(profile.recent_amounts) == MAX_RECENT
    assert profile.recent_epochs == sorted(profile.recent_epochs)
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
