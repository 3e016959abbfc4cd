"""A merchant's risk profile: the fraud labels that came back for its transactions, day by day, and
its payments, day by day (`domain.activity`).

Labels (a chargeback, or a transaction confirmed genuine) arrive days after the payment. A merchant
profile counts them by the UTC day they became known, at most KEPT_DAYS + 1 days of them (past that,
those more than KEPT_DAYS days before the newest are dropped); the merchant features read whole
days only, so a label counts from the midnight after it became known.

Writers: labels are put on the stream with the merchant id as partition key, so one shard (one
function instance at a time) writes a merchant's profile, exactly as one shard writes a user's;
transactions only read it. The merchant's payments come the same way, a record per day
(`domain.activity`) that sets that day's counts. Redelivered labels are recognised by the same
per-shard checkpoints and ring of recent ids that user profiles keep; here a label's id is its
transaction's and its verdict (`Label.applied_id`), so a changed verdict counts as a label of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from fraudwatch.domain.profile import (
    KEPT_DAYS,
    MAX_APPLIED_IDS,
    DayRows,
    Ledger,
    RecentKeys,
    load_state,
)

__all__ = ["KEPT_DAYS", "MerchantCache", "MerchantProfile"]


@dataclass(slots=True, init=False)
class MerchantProfile(Ledger):
    """The state kept per merchant."""

    merchant_id: str
    days: DayRows
    """One row a UTC day labels became known: [day number, labels, of which fraud]."""
    activity: dict[int, list[int]]
    """UTC day number → the payments made at the merchant that day: [payments, cards, new cards]
    (`features.day_activity`)."""
    applied_ids: RecentKeys
    checkpoints: dict[str, str]
    windows: tuple[int, tuple[float, ...]] | None = field(compare=False, repr=False)
    """The features of one day, cached (never stored): they change only at midnight."""

    def __init__(
        self,
        merchant_id: str,
        days: DayRows | None = None,
        activity: dict[int, list[int]] | None = None,
        applied_ids: RecentKeys | None = None,
        checkpoints: dict[str, str] | None = None,
        windows: tuple[int, tuple[float, ...]] | None = None,
    ) -> None:
        """A new merchant's profile, or a stored one's state (None: empty); written out, not generated,
        for the reason `UserProfile.__init__` gives."""
        self.merchant_id = merchant_id
        self.days = [] if days is None else days
        self.activity = {} if activity is None else activity
        self.applied_ids = RecentKeys(MAX_APPLIED_IDS) if applied_ids is None else applied_ids
        self.checkpoints = {} if checkpoints is None else checkpoints
        self.windows = windows

    def to_json(self) -> str:
        """The compact JSON the profile store keeps."""
        return orjson.dumps(
            {
                "d": self.days,
                "a": [[day, *counts] for day, counts in self.activity.items()],
                "ids": self.applied_ids.joined(),
                "cp": self.checkpoints,
            }
        ).decode()

    def all_days(self) -> DayRows:
        """Every day row: a merchant profile stores and reads them all (`UserProfile.all_days` does not)."""
        return self.days

    @classmethod
    def from_json(cls, merchant_id: str, text: str) -> MerchantProfile:
        """Rebuild a profile from `to_json`'s output."""
        state = load_state(text)
        return MerchantProfile(
            merchant_id=merchant_id,
            days=state["d"],
            # Profiles stored before payments were counted have no "a".
            activity={day: counts for day, *counts in state.get("a", ())},
            applied_ids=RecentKeys.from_joined(MAX_APPLIED_IDS, state["ids"]),
            checkpoints=state["cp"],
        )


class _Cached:
    """A merchant's profile as read (None: it has none yet), for the latest UTC day of the transactions it
    was read for, and when. A plain class: compiled, its written-out `__init__` is a native call where a
    dataclass's generated one is interpreted (as `UserProfile.__init__` says)."""

    __slots__ = ("day", "profile", "read_at")

    def __init__(self, profile: MerchantProfile | None, day: int, read_at: float) -> None:
        self.profile = profile
        self.day = day
        self.read_at = read_at


class MerchantCache:
    """Merchant profiles read to score transactions, kept for later batches of the same container.

    A transaction reads only the labels known before its own day's midnight, so a profile read to score
    a transaction of day D serves any other of day D or earlier: the labels it could miss are of day D
    or later, which those transactions do not read. Only a label of an earlier day that reaches the
    stream late could be missed, and `ttl` seconds bound how long. Without it a batch of 100 payments
    reads its users and about as many merchants, two BatchGetItem calls instead of one.

    Profiles read to count labels in are never taken from here: their single writer needs the stored
    state, and once it has changed them they are forgotten here.
    """

    def __init__(self, ttl: float = 60.0, max_entries: int = 20_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, _Cached] = {}

    def lookup(self, days: dict[str, int], now: float) -> tuple[dict[str, MerchantProfile], set[str]]:
        """For merchants and the latest day of their transactions: the profiles held, and those to read."""
        held: dict[str, MerchantProfile] = {}
        missing: set[str] = set()
        for merchant_id, day in days.items():
            entry = self._entries.get(merchant_id)
            if entry is None or entry.day < day or now - entry.read_at >= self.ttl:
                missing.add(merchant_id)
            elif entry.profile is not None:
                held[merchant_id] = entry.profile
        return held, missing

    def remember(self, read: dict[str, MerchantProfile | None], days: dict[str, int], now: float) -> None:
        """Keep profiles just read (None for a merchant without one) for the days they were read for."""
        if len(self._entries) + len(read) > self.max_entries:
            self._entries.clear()
        for merchant_id, profile in read.items():
            self._entries[merchant_id] = _Cached(profile, days[merchant_id], now)

    def forget(self, merchant_ids: Iterable[str]) -> None:
        """Drop these merchants, whose stored profiles are changing."""
        for merchant_id in merchant_ids:
            self._entries.pop(merchant_id, None)
