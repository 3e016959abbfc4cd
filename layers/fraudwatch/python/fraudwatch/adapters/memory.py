"""In-process stores: the ports kept in dicts, for offline scoring, backtests, benchmarks and tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from fraudwatch.domain.decision import DecisionRecord
from fraudwatch.domain.label import Label
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.ports import DecisionPage, Profiles
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.records import QuarantinedRecord
from fraudwatch.errors import InvalidRecordError


class MemoryProfileStore:
    """Profiles in a dict, stored as their JSON like DynamoDB keeps them (so a stored copy never aliases);
    decisions written with their profiles go to `decisions`."""

    def __init__(self, decisions: MemoryDecisionStore | None = None) -> None:
        self.decisions = decisions
        self.items: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.merchant_items: dict[str, str] = {}
        self.labels: dict[tuple[str, float, bool], Label] = {}
        """Labels kept, by transaction, time known and verdict (LabelsTable's key)."""

    def get_many(
        self, user_ids: Iterable[str], merchant_ids: Iterable[str] = (), transaction_ids: Iterable[str] = ()
    ) -> Profiles:
        """The stored profiles of these users and merchants, and the decisions on these transactions."""
        users, merchants = self.items, self.merchant_items
        read = {u: UserProfile.from_json(u, users[u]) for u in set(user_ids) if u in users}
        for user_id, profile in read.items():
            profile.version = self.versions.get(user_id, 0)
        decided = {} if self.decisions is None else self.decisions.items
        return Profiles(
            read,
            {m: MerchantProfile.from_json(m, merchants[m]) for m in set(merchant_ids) if m in merchants},
            {t: decided[t] for t in set(transaction_ids) if t in decided},
        )

    def put_many(self, profiles: Sequence[UserProfile], decisions: Sequence[DecisionRecord] = ()) -> set[str]:
        """Store each user profile whose stored version is the one read, with its user's decisions;
        return the others' ids."""
        if decisions and self.decisions is None:
            raise ValueError("this profile store was given no decision store to write decisions in")
        conflicts = {p.user_id for p in profiles if self.versions.get(p.user_id, 0) != p.version}
        for p in profiles:
            if p.user_id not in conflicts:
                self.items[p.user_id] = p.to_json()
                p.version = self.versions[p.user_id] = p.version + 1
        if self.decisions is not None:
            self.decisions.put_many([d for d in decisions if d.user_id not in conflicts])
        return conflicts

    def put_merchants(self, profiles: Sequence[MerchantProfile], labels: Sequence[Label] = ()) -> set[str]:
        """Store every merchant profile and label."""
        self.merchant_items.update((p.merchant_id, p.to_json()) for p in profiles)
        self.labels.update(((label.transaction_id, label.epoch, label.is_fraud), label) for label in labels)
        return set()


class MemoryDecisionStore:
    """Decisions by transaction id."""

    def __init__(self) -> None:
        self.items: dict[str, DecisionRecord] = {}

    def put_many(self, decisions: Sequence[DecisionRecord]) -> set[str]:
        """Store every decision (a rewrite replaces, as a DynamoDB put does)."""
        self.items.update((d.transaction_id, d) for d in decisions)
        return set()

    def get(self, transaction_id: str) -> DecisionRecord | None:
        """The decision on a transaction, or None."""
        return self.items.get(transaction_id)

    def by_user(self, user_id: str, since: str | None, limit: int, cursor: str | None) -> DecisionPage:
        """A user's decisions from `since` on, newest first; the cursor is the count already given."""
        if cursor is not None and not cursor.isdigit():
            raise InvalidRecordError("cursor", "not a cursor this store returned")
        start = int(cursor or 0)
        mine = sorted(
            (
                d
                for d in self.items.values()
                if d.user_id == user_id and (since is None or d.decided_at >= since)
            ),
            key=lambda d: (d.decided_at, d.transaction_id),
            reverse=True,
        )
        page = mine[start : start + limit]
        return DecisionPage(page, str(start + limit) if start + limit < len(mine) else None)


class MemoryAlertPublisher:
    """Alerts in the order published."""

    def __init__(self) -> None:
        self.published: list[DecisionRecord] = []

    def publish_many(self, decisions: Sequence[DecisionRecord]) -> set[str]:
        """Keep every alert."""
        self.published.extend(decisions)
        return set()


class MemoryQuarantine:
    """Quarantined records in the order received."""

    def __init__(self) -> None:
        self.records: list[QuarantinedRecord] = []

    def put_many(self, items: Sequence[QuarantinedRecord]) -> set[str]:
        """Keep every record."""
        self.records.extend(items)
        return set()


class MemoryDriftStore:
    """Drift counts by (model version, window, writer): DriftTable's items, kept in memory."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, int, str], np.ndarray] = {}

    def add(self, model_version: str, window: int, writer: str, counts: np.ndarray, expires_at: int) -> None:
        """Keep one writer's counts of a window (the same writer again replaces them)."""
        self.items[(model_version, window, writer)] = counts.copy()
