"""The profiles' stored JSON: exact round trips, 56-digit sequence numbers included, and the older format."""

from __future__ import annotations

import json
import random

import pytest

from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.profile import MAX_APPLIED_IDS, MAX_CATEGORIES, MAX_MERCHANTS, RecentKeys, UserProfile

SHARD = "shardId-000000000000"
OTHER_SHARD = "shardId-000000000001"
# Kinesis sequence numbers have 56 digits, far beyond 64 bits
SEQUENCE = 49_659_316_102_413_298_817_294_872_918_452_340_611_358_716_289_351_368_706
OTHER_SEQUENCE = 49_659_316_102_435_599_562_493_403_541_593_876_329_647_367_811_138_781_202
NEXT = str(SEQUENCE + 1)


def ledgered(profile: UserProfile | MerchantProfile) -> UserProfile | MerchantProfile:
    profile.mark_applied("tx-1", SHARD, str(SEQUENCE))
    profile.mark_applied("tx-2", OTHER_SHARD, str(OTHER_SEQUENCE))
    return profile


def test_checkpoints_are_stored_as_their_exact_decimal_digits():
    for profile in (ledgered(UserProfile("u-1")), ledgered(MerchantProfile("m-1"))):
        stored = json.loads(profile.to_json())["cp"]
        assert stored == {SHARD: str(SEQUENCE), OTHER_SHARD: str(OTHER_SEQUENCE)}


@pytest.mark.parametrize("kind", [UserProfile, MerchantProfile])
def test_checkpoints_come_back_as_the_same_numbers(kind: type[UserProfile] | type[MerchantProfile]):
    original = ledgered(kind("id-1"))
    copy = kind.from_json("id-1", original.to_json())
    assert copy.checkpoints == {SHARD: str(SEQUENCE), OTHER_SHARD: str(OTHER_SEQUENCE)}
    assert copy.has_applied("tx-new", SHARD, str(SEQUENCE))
    assert not copy.has_applied("tx-new", SHARD, NEXT)  # one past the checkpoint is new


def test_a_profile_written_with_integer_checkpoints_is_read_exactly():
    """Stored before checkpoints became strings: read as lossy floats, newer records would look applied."""
    older = json.dumps(
        {
            "n": 1,
            "mean": 12.5,
            "m2": 0.0,
            "last": 1_796_620_573.295,
            "te": [1_796_620_573.295],
            "ta": [12.5],
            "cat": "grocery",
            "mer": "m-1",
            "d": [[20_794, 1, 12.5]],
            "ids": "tx-1",
            "cp": {SHARD: SEQUENCE},
        },
        separators=(",", ":"),
    )
    profile = UserProfile.from_json("u-1", older)
    assert profile.checkpoints == {SHARD: str(SEQUENCE)}
    assert not profile.has_applied("tx-new", SHARD, NEXT)
    written = json.loads(profile.to_json())  # written back in the current format
    assert written["cp"] == {SHARD: str(SEQUENCE)}
    assert (written["d"], written["dn"]) == ("[]", [20_794, 1, 12.5])  # its one day row is the last
    merchant_text = json.dumps({"d": [[20_794, 2, 1]], "ids": "tx-1", "cp": {SHARD: SEQUENCE}})
    assert MerchantProfile.from_json("m-1", merchant_text).checkpoints == {SHARD: str(SEQUENCE)}


def test_every_float_comes_back_bit_for_bit():
    """Amounts and epochs of every magnitude, including those whose shortest text has an exponent."""
    rng = random.Random(3)
    values = [rng.uniform(0.01, 100_000) for _ in range(500)] + [1e-7, 0.1 + 0.2, 1e22, 5e-324]
    epochs = sorted(1.7e9 + rng.random() * 86_400 for _ in range(200))
    profile = UserProfile(
        "u-1",
        count=len(values),
        mean=sum(values) / len(values),
        m2=sum(v * v for v in values),
        last_epoch=epochs[-1],
        recent_epochs=epochs,
        recent_amounts=values[:200],
        categories=RecentKeys(MAX_CATEGORIES, ["grocery", "travel"]),
        merchants=RecentKeys(MAX_MERCHANTS, (f"m-{i}" for i in range(50))),
        days=[[20_000 + i, i + 1, values[i]] for i in range(31)],
        applied_ids=RecentKeys(MAX_APPLIED_IDS, (f"tx-{i}" for i in range(80))),
        checkpoints={SHARD: str(SEQUENCE)},
    )
    copy = UserProfile.from_json("u-1", profile.to_json())
    assert copy == profile
    assert [v.hex() for v in copy.recent_amounts] == [v.hex() for v in profile.recent_amounts]
    assert float(copy.all_days()[30][2]).hex() == values[30].hex()


def test_a_profile_is_unhashable_state_shown_by_its_fields() -> None:
    """Compiled by mypyc, a class-level `__hash__ = None` became a field of the dataclass's repr."""
    profile = UserProfile("u-1")
    with pytest.raises(TypeError, match="unhashable"):
        hash(profile)
    assert repr(profile).startswith("UserProfile(user_id='u-1', count=0, ")
    assert "__hash__" not in repr(profile)
