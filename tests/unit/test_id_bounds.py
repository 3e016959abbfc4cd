"""Ids at their longest under the id rule (128 code points of four UTF-8 bytes) keep every store within
its limits, and the rule's one restriction beyond printability, no space, is what profiles need."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fraudwatch.domain.features import DAY, apply, apply_label
from fraudwatch.domain.label import Label
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.transaction import MAX_ID_CHARS, Transaction, id_problem

ITEM_LIMIT = 400 * 1024  # DynamoDB's item size limit
KEY_LIMIT = 2048  # DynamoDB's partition key limit, bytes
PARTITION_KEY_LIMIT = 256  # Kinesis's, in characters (counted here as UTF-16 units, the stricter way)
HOT = 10_000
START = datetime(2026, 11, 30, tzinfo=UTC)
SEQUENCE = 49_590_338_271_490_256_608_559_692_538_361_571_033_948_521_123_456_789_012
"""A Kinesis sequence number (56 digits) the records here follow from."""
WIDE = "\U0001f600"  # four bytes of UTF-8


def longest_id(prefix: str, i: int) -> str:
    """A valid id of MAX_ID_CHARS code points, nearly all of four UTF-8 bytes, unique by `i`."""
    head = f"{prefix}{i:07d}"
    return head + WIDE * (MAX_ID_CHARS - len(head))


def test_the_longest_id_fits_a_partition_key_of_kinesis_and_of_dynamodb():
    key = WIDE * MAX_ID_CHARS
    assert id_problem(key) is None
    assert len(key.encode("utf-16-le")) // 2 <= PARTITION_KEY_LIMIT
    assert len(key.encode()) <= KEY_LIMIT


def test_a_hot_user_profile_with_the_longest_ids_stays_under_the_item_limit():
    """The bound of test_profile_bounds.py (10,000 transactions a day), every id at its widest."""
    profile = UserProfile(WIDE * MAX_ID_CHARS)
    for i in range(HOT):
        at = START + timedelta(seconds=i * DAY / HOT)
        tx = Transaction(
            transaction_id=longest_id("t", i),
            user_id=profile.user_id,
            merchant_id=longest_id("m", i),
            amount=1234.5678 + i / 7,
            currency="USD",
            timestamp=at.isoformat(),
            category=f"c{i:04d}_".ljust(32, "c"),
            epoch=at.timestamp() + 0.123456,
            local_hour=at.hour,
        )
        apply(profile, tx)
        profile.mark_applied(tx.transaction_id, "shardId-000000000000", str(SEQUENCE + i))
    size = len(profile.to_json().encode())
    assert size < ITEM_LIMIT / 2, size
    assert UserProfile.from_json(profile.user_id, profile.to_json()) == profile


def test_a_merchant_profile_with_the_longest_ids_stays_small():
    merchant = MerchantProfile(WIDE * MAX_ID_CHARS)
    for i in range(3_000):
        at = START + timedelta(seconds=i * DAY / 100)
        label = Label(longest_id("t", i), merchant.merchant_id, i % 7 == 0, at.isoformat(), at.timestamp())
        apply_label(merchant, label)
        merchant.mark_applied(label.applied_id, "shardId-000000000000", str(SEQUENCE + i))
    size = len(merchant.to_json().encode())
    assert size < ITEM_LIMIT / 8, size
    assert MerchantProfile.from_json(merchant.merchant_id, merchant.to_json()) == merchant


def test_ids_with_a_space_would_not_survive_a_profile_so_they_are_refused():
    """Profiles store their id sets space-joined: an id with a space comes back as two, one of which
    may cut another id short ("tx 1" then "1" is "tx 1 1"). When profile.py stores them otherwise,
    allow spaces."""
    profile = UserProfile("user-1")
    profile.mark_applied("tx 1", "shardId-000000000000", "1")
    profile.mark_applied("1", "shardId-000000000000", "2")
    stored = UserProfile.from_json("user-1", profile.to_json())
    assert list(stored.applied_ids) == ["tx", "1", "1"]
    assert id_problem("tx 1") is not None
