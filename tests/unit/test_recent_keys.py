"""RecentKeys keeps a profile's key sets as their stored text: it must behave exactly as the
insertion-ordered set it replaced (a used key moves to the end, the oldest goes past the bound),
across any number of store round trips."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fraudwatch.domain.profile import RecentKeys

KEYS = st.sampled_from(["a", "b", "ab", "ba", "c", "a-1", "1", "café", "東京", "x" * 20])
"""Keys that are substrings of one another, so a lookup between spaces is what tells them apart."""


def reference_touch(keys: dict[str, None], key: str, bound: int) -> None:
    """The set it replaced: an insertion-ordered dict whose used keys move to the end."""
    keys.pop(key, None)
    keys[key] = None
    if len(keys) > bound:
        del keys[next(iter(keys))]


@settings(max_examples=300, deadline=None)
@given(
    bound=st.integers(1, 5),
    steps=st.lists(st.tuples(KEYS, st.booleans(), st.booleans()), max_size=40),
    probes=st.lists(KEYS, max_size=5),
)
def test_it_is_the_ordered_bounded_set_it_replaced_across_round_trips(
    bound: int, steps: list[tuple[str, bool, bool]], probes: list[str]
) -> None:
    expected: dict[str, None] = {}
    keys = RecentKeys(bound)
    for key, asked_first, stored_after in steps:
        if asked_first:  # as a record does: its features ask, its update touches where the asking found
            assert (key in keys) == (key in expected)
        reference_touch(expected, key, bound)
        keys.touch(key)
        if stored_after:  # written and read back, as a profile is between batches
            keys = RecentKeys.from_joined(bound, keys.joined())
        assert list(keys) == list(expected)
        assert len(keys) == len(expected)
        assert keys.joined() == " ".join(expected)
        for probe in [*probes, key]:
            assert (probe in keys) == (probe in expected)


def test_a_key_cut_from_the_stored_text_leaves_its_neighbours_whole() -> None:
    keys = RecentKeys.from_joined(3, "ab b ba")
    keys.touch("b")
    assert list(keys) == ["ab", "ba", "b"]
    assert ["a" in keys, "ab" in keys, "ba" in keys] == [False, True, True]
    keys.touch("c")  # past the bound: the oldest stored word goes
    assert list(keys) == ["ba", "b", "c"]
    assert keys == RecentKeys(3, ["ba", "b", "c"])
    assert list(reversed(keys)) == ["c", "b", "ba"]
