"""The merchant cache: what a later batch may reuse, and when it must read the store again."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from fraudwatch.domain.merchant import MerchantCache, MerchantProfile
from fraudwatch.domain.ports import Profiles
from fraudwatch.domain.records import StreamRecord
from fraudwatch.domain.scoring import ScoringService
from infra.events import label_body
from tests.fakes import FakeAlertPublisher, FakeDecisionStore, FakeModel, FakeProfileStore, FakeQuarantine

DAY = 86400.0
START = 1_790_000_000.0 - 1_790_000_000.0 % DAY  # a UTC midnight
SHARD = "shardId-000000000000"


class CountingStore(FakeProfileStore):
    """Records the merchant ids each read asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.merchant_reads: list[set[str]] = []

    def get_many(
        self, user_ids: Iterable[str], merchant_ids: Iterable[str] = (), transaction_ids: Iterable[str] = ()
    ) -> Profiles:
        wanted = set(merchant_ids)
        self.merchant_reads.append(wanted)
        return super().get_many(user_ids, wanted, transaction_ids)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def record(sequence: int, body: dict[str, object], at: float) -> StreamRecord:
    return StreamRecord(SHARD, str(sequence), json.dumps(body).encode(), at)


def payment(sequence: int, at: float, merchant: str = "m-1") -> StreamRecord:
    body = {
        "transaction_id": f"tx-{sequence}",
        "user_id": f"u-{sequence % 3}",
        "merchant_id": merchant,
        "amount": 20.0,
        "currency": "EUR",
        "timestamp": datetime.fromtimestamp(at, UTC).isoformat(),
        "category": "grocery",
    }
    return record(sequence, body, at)


def label(sequence: int, at: float, merchant: str = "m-1", fraud: bool = True) -> StreamRecord:
    body = label_body(f"old-{sequence}", merchant, fraud, datetime.fromtimestamp(at, UTC).isoformat())
    return record(sequence, body, at)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def service(store: CountingStore, clock: Clock) -> ScoringService:
    return ScoringService(
        profiles=store,
        decisions=FakeDecisionStore(),
        alerts=FakeAlertPublisher(),
        quarantine=FakeQuarantine(),
        model=FakeModel(),
        clock=clock,
        merchant_cache=MerchantCache(ttl=60.0),
    )


def test_a_merchant_read_for_a_day_serves_later_batches_of_that_day(service, store, clock):
    service.process([payment(1, START + 3600)])
    clock.now += 10
    service.process([payment(2, START + 3610)])
    assert store.merchant_reads == [{"m-1"}, set()]


def test_a_merchant_without_a_profile_is_remembered_as_such(service, store, clock):
    service.process([payment(1, START + 3600, merchant="m-new")])
    service.process([payment(2, START + 3700, merchant="m-new")])
    assert store.merchant_reads[1] == set()


def test_a_transaction_of_a_later_day_reads_the_merchant_again(service, store, clock):
    service.process([payment(1, START + 3600)])
    clock.now += 10
    service.process([payment(2, START + DAY + 60)])
    assert store.merchant_reads == [{"m-1"}, {"m-1"}]


def test_a_late_transaction_of_an_earlier_day_is_served_from_the_cache(service, store, clock):
    service.process([payment(1, START + DAY + 60)])
    service.process([payment(2, START + 3600)])
    assert store.merchant_reads[1] == set()


def test_after_the_ttl_the_merchant_is_read_again(service, store, clock):
    service.process([payment(1, START + 3600)])
    clock.now += 60
    service.process([payment(2, START + 3700)])
    assert store.merchant_reads == [{"m-1"}, {"m-1"}]


def test_labels_always_read_their_merchant_and_the_next_payment_sees_them_the_next_day(service, store, clock):
    service.process([payment(1, START + 3600)])
    # Labels of that merchant, known today, arrive on this container: read from the store, then counted.
    service.process([label(2, START + 4000), label(3, START + 4100, fraud=False)])
    assert store.merchant_reads[1] == {"m-1"}
    stored = MerchantProfile.from_json("m-1", store.merchant_items["m-1"])
    assert sum(row[1] for row in stored.days) == 2
    # The next day's payment reads the merchant again and scores it with both labels.
    report = service.process([payment(4, START + DAY + 60)])
    assert store.merchant_reads[2] == {"m-1"}
    assert len(report.decisions) == 1


def test_a_merchant_whose_labels_were_counted_here_is_not_served_stale(service, store, clock):
    service.process([payment(1, START + DAY + 60)])  # cached for day 1
    service.process([label(2, START + 600)])  # a late label of day 0: changes day 1's features
    service.process([payment(3, START + DAY + 120)])
    assert store.merchant_reads[2] == {"m-1"}


def test_the_cache_stays_bounded() -> None:
    cache = MerchantCache(ttl=60.0, max_entries=3)
    cache.remember({f"m-{i}": None for i in range(3)}, {f"m-{i}": 0 for i in range(3)}, 0.0)
    cache.remember({"m-9": None}, {"m-9": 0}, 0.0)
    held, missing = cache.lookup({"m-0": 0, "m-9": 0}, 1.0)
    assert held == {}
    assert missing == {"m-0"}
