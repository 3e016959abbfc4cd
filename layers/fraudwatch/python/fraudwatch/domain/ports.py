"""The small interfaces the domain needs from the outside world; adapters implement them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

from fraudwatch.domain.decision import DecisionRecord, Reason, Thresholds
from fraudwatch.domain.label import Label
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.records import QuarantinedRecord


class Profiles(NamedTuple):
    """Stored profiles by id, and the decisions asked for by transaction id; absent ones are left out."""

    users: dict[str, UserProfile]
    merchants: dict[str, MerchantProfile]
    decided: dict[str, DecisionRecord]


class ProfileStore(Protocol):
    """Per-user and per-merchant profiles, read together (with the decisions written beside them)."""

    def get_many(
        self, user_ids: Iterable[str], merchant_ids: Iterable[str] = (), transaction_ids: Iterable[str] = ()
    ) -> Profiles:
        """The stored profiles of these users and merchants, and the decisions already made on these
        transactions, in one read; raises ProfileStoreError."""
        ...

    def put_many(self, profiles: Sequence[UserProfile], decisions: Sequence[DecisionRecord] = ()) -> set[str]:
        """Write user profiles, each only if its stored version is still `profile.version`, and each of
        `decisions` in the same write as its user's profile: both or neither.

        Return the user ids whose stored profile another writer changed meanwhile (nothing of theirs
        written, their decisions neither); raise ProfileStoreError naming those a failure left unwritten.
        """
        ...

    def put_merchants(self, profiles: Sequence[MerchantProfile], labels: Sequence[Label] = ()) -> set[str]:
        """Write merchant profiles, and keep the labels' verdicts (the matured metrics read them); return
        the merchant ids whose profile or labels could not be written, or raise ProfileStoreError naming
        them."""
        ...


class DecisionStore(Protocol):
    """Decisions, one per transaction."""

    def put_many(self, decisions: Sequence[DecisionRecord]) -> set[str]:
        """Write decisions; return the transaction ids that could not be written."""
        ...


class DecisionPage(NamedTuple):
    """A page of a user's decisions, newest first, and the cursor of the next page (None: the last)."""

    decisions: list[DecisionRecord]
    next: str | None


class DecisionReader(Protocol):
    """Decisions read back: one by transaction id, or a user's over time."""

    def get(self, transaction_id: str) -> DecisionRecord | None:
        """The decision on a transaction, or None; raises DecisionStoreError."""
        ...

    def by_user(self, user_id: str, since: str | None, limit: int, cursor: str | None) -> DecisionPage:
        """A user's decisions decided at or after `since` (ISO 8601 UTC), newest first, `limit` a page,
        after the page whose `next` is `cursor`; raises InvalidRecordError on a cursor not from here,
        DecisionStoreError when the read fails."""
        ...


class AlertPublisher(Protocol):
    """Alerts for FLAGGED and REJECTED decisions."""

    def publish_many(self, decisions: Sequence[DecisionRecord]) -> set[str]:
        """Publish one alert per decision, its id the transaction id; return the ids not published."""
        ...


class Quarantine(Protocol):
    """Where malformed records go, with their reason."""

    def put_many(self, items: Sequence[QuarantinedRecord]) -> set[str]:
        """Keep these records; return the sequence numbers of those that could not be kept."""
        ...


class Model(Protocol):
    """A scoring model with its ordered features and decision thresholds."""

    version: str
    feature_names: tuple[str, ...]
    thresholds: Thresholds

    def score(self, rows: Sequence[Sequence[float]]) -> Sequence[float]:
        """Fraud probabilities, one per row, in one call."""
        ...

    def explain(self, rows: Sequence[Sequence[float]], top: int) -> list[tuple[Reason, ...]]:
        """The `top` features pushing each row's score up the most."""
        ...
