"""The daily count of merchants' payments (`count_days`) against its definition, on payments in any order."""

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudwatch.domain.activity import MerchantActivity, count_days, count_recent
from fraudwatch.domain.features import NEW_CARD_DAYS

DAY0 = 20_790

payments = st.lists(
    st.tuples(
        st.sampled_from(["m1", "m2", "m3"]),
        st.sampled_from(["c1", "c2", "c3", "c4"]),
        st.integers(DAY0 - NEW_CARD_DAYS - 5, DAY0 + 3),
    ),
    max_size=60,
)


def by_definition(paid: list[tuple[str, str, int]], days: list[int]) -> list[MerchantActivity]:
    """Each counted day's payments and cards at each merchant, and the cards that did not pay there on the
    NEW_CARD_DAYS days before."""
    found = []
    for day in sorted(set(days)):
        for merchant in sorted({m for m, _, d in paid if d == day}):
            today = [card for m, card, d in paid if m == merchant and d == day]
            before = {card for m, card, d in paid if m == merchant and day - NEW_CARD_DAYS <= d < day}
            found.append(
                MerchantActivity(merchant, day, len(today), len(set(today)), len(set(today) - before))
            )
    return found


@settings(max_examples=300, deadline=None)
@given(payments, st.lists(st.integers(DAY0 - 6, DAY0 + 2), min_size=1, max_size=7))
def test_each_day_counts_its_payments_cards_and_cards_new_to_the_merchant(
    paid: list[tuple[str, str, int]], days: list[int]
) -> None:
    assert count_days(paid, days) == by_definition(paid, days)
    assert count_days(reversed(paid), days) == by_definition(paid, days)  # any order


def test_nothing_to_count_is_no_activity() -> None:
    assert count_days([("m1", "c1", DAY0)], []) == []
    assert count_days([], [DAY0]) == []


def test_the_recount_reads_the_days_it_counts_and_the_days_that_tell_new_cards() -> None:
    asked: list[list[int]] = []

    def payments_on(days: Iterable[int]) -> list[tuple[str, str, int]]:
        asked.append(list(days))
        return [("m1", "c1", DAY0 - 6 - NEW_CARD_DAYS), ("m1", "c1", DAY0 - 6), ("m1", "c2", DAY0)]

    assert count_recent(payments_on, DAY0, 7) == [
        MerchantActivity("m1", DAY0 - 6, 1, 1, 0),  # c1 paid there NEW_CARD_DAYS before: not new
        MerchantActivity("m1", DAY0, 1, 1, 1),
    ]
    assert asked == [list(range(DAY0 - 6 - NEW_CARD_DAYS, DAY0 + 1))]


@pytest.mark.parametrize("days", [0, -1])
def test_counting_fewer_than_one_day_is_refused_naming_the_count(days: int) -> None:
    def payments_on(days: Iterable[int]) -> list[tuple[str, str, int]]:
        raise AssertionError("nothing is read for no day")

    with pytest.raises(ValueError, match=f"the days to count must be at least 1, got {days}"):
        count_recent(payments_on, DAY0, days)
