"""A merchant's payments of one UTC day, counted after its midnight: the signals that need no labels.

Payments are keyed by user on the stream, so no function instance sees all of a merchant's; the
decisions table does, one item per transaction. After each UTC midnight a job counts the day just
ended there, per merchant (`count_days`), and puts each count on the stream as a record keyed by
the merchant, so the merchant's profile keeps its single writer (the stream's shard of that key):

    {"event": "activity", "merchant_id": "merch-7", "day": "2026-09-01",
     "payments": 41, "cards": 37, "new_cards": 5}

Applying one sets the day's counts (`features.apply_activity`), it never adds to them: a record
delivered twice, or a day counted again (the job run twice, or after late decisions), leaves what one
count of the decisions leaves. The counts are a pure function of the decisions table, so the job
holds no state of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from typing import NamedTuple

from fraudwatch.domain.decision import DecisionRecord
from fraudwatch.domain.features import DAY, NEW_CARD_DAYS, day_activity
from fraudwatch.domain.transaction import (
    MAX_AGE_SECONDS,
    MAX_FUTURE_SKEW_SECONDS,
    identifier,
    parse_timestamp,
)
from fraudwatch.errors import InvalidRecordError

ACTIVITY_FIELDS = ("merchant_id", "day", "payments", "cards", "new_cards")


class MerchantActivity(NamedTuple):
    """One merchant's payments of one UTC day (a day number: epoch seconds // DAY)."""

    merchant_id: str
    day: int
    payments: int
    cards: int
    new_cards: int

    def to_mapping(self) -> dict[str, object]:
        """The record's fields, as the stream carries them (without `event`)."""
        return {
            "merchant_id": self.merchant_id,
            "day": datetime.fromtimestamp(self.day * DAY, UTC).date().isoformat(),
            "payments": self.payments,
            "cards": self.cards,
            "new_cards": self.new_cards,
        }


def activity_from_mapping(obj: dict[str, object], *, received_at: float | None = None) -> MerchantActivity:
    """Validate a decoded activity record; extra keys are allowed and ignored."""
    missing = [name for name in ACTIVITY_FIELDS if name not in obj]
    if missing:
        raise InvalidRecordError(missing[0], "missing")
    text = obj["day"]
    try:
        day = date.fromisoformat(text) if isinstance(text, str) and len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise InvalidRecordError("day", f"expected a date as YYYY-MM-DD, got {text!r}")
    number = (day - date(1970, 1, 1)).days
    if received_at is not None:
        # A day's count can change until its last payment may arrive: it is refused once the day
        # ended more than the stream's 7 days before (the daily count's oldest day ended 6 days before).
        if number * DAY > received_at + MAX_FUTURE_SKEW_SECONDS:
            raise InvalidRecordError("day", "has not begun")
        if (number + 1) * DAY < received_at - MAX_AGE_SECONDS:
            raise InvalidRecordError("day", "ended more than 7 days in the past")
    payments, cards, new_cards = (_count(obj, name) for name in ("payments", "cards", "new_cards"))
    if not new_cards <= cards <= payments:
        raise InvalidRecordError("cards", "expected new_cards <= cards <= payments")
    return MerchantActivity(identifier(obj, "merchant_id"), number, payments, cards, new_cards)


def _count(obj: dict[str, object], field: str) -> int:
    value = obj[field]
    if type(value) is not int or value < 0:
        raise InvalidRecordError(field, f"expected a count (an integer >= 0), got {value!r}")
    return value


def payments_of(decisions: Iterable[DecisionRecord]) -> Iterator[tuple[str, str, int]]:
    """The payment behind each decision, as `count_days` reads it: (merchant id, card, UTC day)."""
    for decision in decisions:
        yield decision.merchant_id, decision.user_id, payment_day(decision.transaction_time)


def payment_day(transaction_time: str) -> int:
    """The UTC day number of a payment's timestamp (a decision's `transaction_time`)."""
    return int(parse_timestamp(transaction_time).timestamp() // DAY)


RECOUNT_DAYS = 7
"""Days counted each run, the day just ended and those before it: a payment may reach the stream 7
days late (the contract's limit), and its day's count must include it."""

MAX_COUNT_DAYS = 30
"""The most days one run counts (ModelOpsFunction's ACTIVITY_DAYS, `fraudwatch activity --days`)."""


def count_days(payments: Iterable[tuple[str, str, int]], days: Iterable[int]) -> list[MerchantActivity]:
    """Each merchant's activity on each of `days`, by day then merchant, from payments as (merchant id,
    card, UTC day), in any order.

    The payments of a day are counted; those of the NEW_CARD_DAYS days before tell which cards are new
    to their merchant; the others are ignored. What the offline replay counts, by the same
    `day_activity`. The payments are read once and kept as each merchant's cards by day, each card's
    text once: memory grows by a list slot a payment (about 8 bytes) and a string a distinct card.
    """
    counted = set(days)
    if not counted:
        return []
    first, last = min(counted) - NEW_CARD_DAYS, max(counted)
    cards: dict[str, str] = {}
    paid: dict[str, dict[int, list[str]]] = {}
    for merchant_id, card, day in payments:
        if first <= day <= last:
            paid.setdefault(merchant_id, {}).setdefault(day, []).append(cards.setdefault(card, card))
    found: list[MerchantActivity] = []
    for merchant_id, by_day in paid.items():
        last_seen: dict[str, int] = {}
        for day in sorted(by_day):
            activity = day_activity(by_day[day], last_seen, day)
            if day in counted:
                found.append(MerchantActivity(merchant_id, day, *activity))
    found.sort(key=lambda a: (a.day, a.merchant_id))
    return found


def days_to_count(last: int, count: int = RECOUNT_DAYS) -> list[int]:
    """The `count` UTC days ending with `last`, oldest first."""
    return list(range(last - count + 1, last + 1))


def count_recent(
    payments_on: Callable[[Iterable[int]], Iterable[tuple[str, str, int]]],
    last: int,
    days: int = RECOUNT_DAYS,
) -> list[MerchantActivity]:
    """Each merchant's activity on the `days` UTC days ending with `last`, from the payments made on them
    and on the NEW_CARD_DAYS days before (`payments_on(days)`: the decisions table's, by payment day).
    Raises ValueError for fewer than one day."""
    if days < 1:
        raise ValueError(f"the days to count must be at least 1, got {days}")
    counted = days_to_count(last, days)
    return count_days(payments_on(range(counted[0] - NEW_CARD_DAYS, last + 1)), counted)
