"""In-memory fakes of the domain's ports, with failure injection, for domain tests.

The stores are the dict-backed ones of `fraudwatch.adapters.memory` (profiles kept as their JSON, as
DynamoDB keeps them). Each fake adds two hooks, used once and then cleared:

* `fail_next`: keys (user id, transaction id or sequence number) the next write reports as unwritten,
  the way a partial batch write reports unprocessed items;
* `raise_next`: an exception the next call raises, the way a throttled or failed call does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from fraudwatch.adapters.memory import (
    MemoryAlertPublisher,
    MemoryDecisionStore,
    MemoryProfileStore,
    MemoryQuarantine,
)
from fraudwatch.domain.decision import DecisionRecord, Reason, Thresholds
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.label import Label
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.ports import Profiles
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.records import QuarantinedRecord
from fraudwatch.errors import ProfileStoreError


class _Faults:
    """The failure hooks shared by every fake."""

    def __init__(self) -> None:
        self.fail_next: set[str] = set()
        self.raise_next: Exception | None = None
        self.calls = 0

    def _enter(self) -> None:
        self.calls += 1
        if self.raise_next is not None:
            exc, self.raise_next = self.raise_next, None
            raise exc

    def _failing(self, keys: Iterable[str]) -> set[str]:
        """Which of these keys to report as unwritten (each only once)."""
        failed = self.fail_next & set(keys)
        self.fail_next -= failed
        return failed


class FakeProfileStore(_Faults, MemoryProfileStore):
    """Profiles by user id, stored as JSON."""

    def __init__(self, decisions: MemoryDecisionStore | None = None) -> None:
        _Faults.__init__(self)
        MemoryProfileStore.__init__(self, decisions)
        self.before_put: Callable[[], object] | None = None

    def get_many(
        self, user_ids: Iterable[str], merchant_ids: Iterable[str] = (), transaction_ids: Iterable[str] = ()
    ) -> Profiles:
        """The stored profiles of these users and merchants, and the decisions on these transactions."""
        self._enter()
        return super().get_many(user_ids, merchant_ids, transaction_ids)

    def put_many(self, profiles: Sequence[UserProfile], decisions: Sequence[DecisionRecord] = ()) -> set[str]:
        """Store the profiles not chosen to fail (with their decisions), each if its version is the one
        read; return conflicts.

        `before_put`, when set, runs once before the write: another writer racing this one.
        """
        self._enter()
        if self.before_put is not None:
            race, self.before_put = self.before_put, None
            race()
        failed = self._failing(p.user_id for p in profiles)
        conflicts = super().put_many(
            [p for p in profiles if p.user_id not in failed],
            [d for d in decisions if d.user_id not in failed],
        )
        if failed:
            raise ProfileStoreError("Injected", operation="TransactWriteItems", unwritten=failed)
        return conflicts

    def put_merchants(self, profiles: Sequence[MerchantProfile], labels: Sequence[Label] = ()) -> set[str]:
        """Store the merchant profiles and labels not chosen to fail (a label by its merchant)."""
        self._enter()
        failed = self._failing(p.merchant_id for p in profiles) | self._failing(
            lb.merchant_id for lb in labels
        )
        super().put_merchants(
            [p for p in profiles if p.merchant_id not in failed],
            [label for label in labels if label.merchant_id not in failed],
        )
        return failed


class FakeDecisionStore(_Faults, MemoryDecisionStore):
    """Decisions by transaction id."""

    def __init__(self) -> None:
        _Faults.__init__(self)
        MemoryDecisionStore.__init__(self)

    def put_many(self, decisions: Sequence[DecisionRecord]) -> set[str]:
        """Store the decisions not chosen to fail."""
        self._enter()
        failed = self._failing(d.transaction_id for d in decisions)
        super().put_many([d for d in decisions if d.transaction_id not in failed])
        return failed


class FakeAlertPublisher(_Faults, MemoryAlertPublisher):
    """Alerts in the order published."""

    def __init__(self) -> None:
        _Faults.__init__(self)
        MemoryAlertPublisher.__init__(self)

    def publish_many(self, decisions: Sequence[DecisionRecord]) -> set[str]:
        """Publish the alerts not chosen to fail."""
        self._enter()
        failed = self._failing(d.transaction_id for d in decisions)
        super().publish_many([d for d in decisions if d.transaction_id not in failed])
        return failed


class FakeQuarantine(_Faults, MemoryQuarantine):
    """Quarantined records in the order received."""

    def __init__(self) -> None:
        _Faults.__init__(self)
        MemoryQuarantine.__init__(self)

    def put_many(self, items: Sequence[QuarantinedRecord]) -> set[str]:
        """Keep the records not chosen to fail."""
        self._enter()
        failed = self._failing(q.record.sequence_number for q in items)
        super().put_many([q for q in items if q.record.sequence_number not in failed])
        return failed


class FakeModel:
    """A model that records every batch of rows it scores; scores come from `scorer` (default 0.0)."""

    def __init__(
        self,
        scorer: Callable[[Sequence[float]], float] | None = None,
        thresholds: Thresholds | None = None,
        version: str = "fake-1",
    ) -> None:
        self.version = version
        self.feature_names = FEATURE_NAMES
        self.thresholds = thresholds or Thresholds(flag=0.5, reject=0.9)
        self.scorer = scorer or (lambda row: 0.0)
        self.batches: list[list[tuple[float, ...]]] = []
        self.explained: list[list[tuple[float, ...]]] = []

    @property
    def rows(self) -> list[tuple[float, ...]]:
        """Every row scored, in the order scored."""
        return [row for batch in self.batches for row in batch]

    def score(self, rows: Sequence[Sequence[float]]) -> list[float]:
        """Record the batch; score each row."""
        batch = [tuple(row) for row in rows]
        self.batches.append(batch)
        return [self.scorer(row) for row in batch]

    def explain(self, rows: Sequence[Sequence[float]], top: int) -> list[tuple[Reason, ...]]:
        """Blame the amount, for every row."""
        batch = [tuple(row) for row in rows]
        self.explained.append(batch)
        return [(Reason("amount", row[0], 1.0),)[:top] for row in batch]


def tiny_history(transactions: int = 3000, users: int = 40, days: int = 12, seed: int = 0) -> pd.DataFrame:
    """A small labelled history in the contract's schema, for tests that must not wait on the generator.

    Users pay around their own level in their own categories, at various UTC offsets, sometimes in
    bursts; fraud (about 5%) is an amount several times the user's level, at night, in a category the
    user never uses.
    """
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    offsets = [timedelta(hours=h) for h in (0, 1, 2, -5, 5.5, -8)]
    categories = ["grocery", "fuel", "restaurants", "online", "travel", "electronics", "jewelry"]
    user_level = rng.lognormal(3.0, 0.6, users)
    user_offset = rng.integers(0, len(offsets), users)
    seconds = np.sort(rng.uniform(0, days * 86400, transactions))
    # Bursts: some transactions land 0-600 s after the previous one, so 1 h windows fill up.
    bursts = rng.random(transactions) < 0.15
    seconds[1:][bursts[1:]] = seconds[:-1][bursts[1:]] + rng.uniform(0, 600, bursts[1:].sum())
    seconds = np.sort(seconds)
    user = rng.integers(0, users, transactions)
    fraud = rng.random(transactions) < 0.05
    amount = np.round(user_level[user] * rng.lognormal(0.0, 0.3, transactions), 2)
    amount[fraud] = np.round(amount[fraud] * rng.uniform(4, 10, int(fraud.sum())), 2)
    category = rng.integers(0, 4, transactions)
    category[fraud] = rng.integers(4, len(categories), int(fraud.sum()))
    rows = []
    for i in range(transactions):
        zone = timezone(offsets[user_offset[user[i]]])
        instant = (start + timedelta(seconds=float(seconds[i]))).astimezone(zone)
        if fraud[i]:
            # Fraud happens at night, local time: move it to 01:00-04:59 of the same day.
            instant = instant.replace(hour=int(rng.integers(1, 5)))
        rows.append(
            {
                "transaction_id": f"tx-{i:06d}",
                "user_id": f"user-{user[i]:03d}",
                "merchant_id": f"m-{rng.integers(0, 30) if not fraud[i] else rng.integers(900, 999)}",
                "amount": float(max(amount[i], 0.01)),
                "currency": "EUR",
                "timestamp": instant.isoformat(),
                "category": categories[category[i]],
                "is_fraud": bool(fraud[i]),
                "fraud_pattern": "account_takeover" if fraud[i] else "none",
            }
        )
    frame = pd.DataFrame(rows)
    order = np.argsort([datetime.fromisoformat(t).timestamp() for t in frame["timestamp"]], kind="stable")
    return frame.iloc[order].reset_index(drop=True)
