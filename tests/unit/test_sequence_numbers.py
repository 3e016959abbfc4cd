"""Sequence numbers stay the decimal text Kinesis writes: compared as the numbers they are, never read."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.records import at_or_before

SHARD = "shardId-000000000000"
SEQUENCES = st.integers(min_value=0, max_value=10**128 - 1)
"""Kinesis's: decimal, no leading zero, up to 128 digits (56 today)."""


@given(SEQUENCES, SEQUENCES)
def test_text_compares_as_the_numbers_do(a: int, b: int) -> None:
    assert at_or_before(str(a), str(b)) == (a <= b)


def test_a_checkpoint_moves_forward_across_a_new_digit_and_never_back() -> None:
    profile = UserProfile("u-1")
    profile.mark_applied("tx-9", SHARD, "9")
    profile.mark_applied("tx-10", SHARD, "10")  # "10" < "9" as text, not as a number
    assert profile.checkpoints == {SHARD: "10"}
    profile.checkpoint(SHARD, "11")
    profile.checkpoint(SHARD, "2")  # late, behind the checkpoint: it stays
    assert profile.checkpoints == {SHARD: "11"}
    assert profile.has_applied("tx-other", SHARD, "9")
    assert not profile.has_applied("tx-other", SHARD, "100")
