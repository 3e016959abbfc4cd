"""The scoring service on in-memory ports: decisions, quarantine, idempotency and partial failures."""

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from fraudwatch.adapters.memory import (
    MemoryAlertPublisher,
    MemoryDecisionStore,
    MemoryProfileStore,
    MemoryQuarantine,
)
from fraudwatch.domain.decision import Decision, DecisionRecord, Reason, Thresholds
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.records import StreamRecord
from fraudwatch.domain.scoring import ScoringService
from fraudwatch.errors import AlertPublishError, ProfileStoreError
from tests.fakes import FakeProfileStore

T0 = 1_796_000_000.0
AMOUNT = FEATURE_NAMES.index("amount")


class AmountModel:
    """Scores by amount alone: > 1000 REJECTED, > 500 FLAGGED, else APPROVED (thresholds 0.5 / 0.9)."""

    version = "amount-rule-1"
    feature_names = FEATURE_NAMES
    thresholds = Thresholds(flag=0.5, reject=0.9)

    def __init__(self) -> None:
        self.calls = 0

    def score(self, rows: Sequence[Sequence[float]]) -> list[float]:
        self.calls += 1
        return [0.95 if r[AMOUNT] > 1000 else 0.6 if r[AMOUNT] > 500 else 0.01 for r in rows]

    def explain(self, rows: Sequence[Sequence[float]], top: int) -> list[tuple[Reason, ...]]:
        return [(Reason("amount", r[AMOUNT], 1.0),) for r in rows]


class FlakyDecisions(MemoryDecisionStore):
    """Leaves chosen transactions unwritten, once."""

    def __init__(self, fail: set[str]) -> None:
        super().__init__()
        self.fail = fail

    def put_many(self, decisions: Sequence[DecisionRecord]) -> set[str]:
        failed, self.fail = {d.transaction_id for d in decisions} & self.fail, set()
        super().put_many([d for d in decisions if d.transaction_id not in failed])
        return failed


class CrashingPublisher(MemoryAlertPublisher):
    """Raises on its first call, as a crash between the decision write and the alert would."""

    def __init__(self) -> None:
        super().__init__()
        self.crash = True

    def publish_many(self, decisions: Sequence[DecisionRecord]) -> set[str]:
        if self.crash:
            self.crash = False
            raise AlertPublishError("SNS unavailable")
        return super().publish_many(decisions)


class BrokenProfiles(MemoryProfileStore):
    def get_many(self, user_ids, merchant_ids=()):
        raise ProfileStoreError("throttled")


def record(
    seq: int, *, user: str = "user-1", amount: float = 20.0, minutes: float = 0.0, **changes
) -> StreamRecord:
    body = {
        "transaction_id": f"tx-{seq}",
        "user_id": user,
        "merchant_id": "merch-1",
        "amount": amount,
        "currency": "USD",
        "timestamp": _iso(T0 + minutes * 60),
        "category": "grocery",
        **changes,
    }
    epoch = T0 + minutes * 60
    return StreamRecord("shardId-000000000000", str(seq), json.dumps(body).encode(), epoch + 1)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def service(**ports) -> tuple[ScoringService, dict]:
    parts = {
        "profiles": MemoryProfileStore(),
        "decisions": MemoryDecisionStore(),
        "alerts": MemoryAlertPublisher(),
        "quarantine": MemoryQuarantine(),
        "model": AmountModel(),
        **ports,
    }
    return ScoringService(**parts, clock=lambda: T0 + 3600), parts


def batch() -> list[StreamRecord]:
    return [
        record(1, user="user-1", amount=20, minutes=0),
        record(2, user="user-2", amount=700, minutes=1),
        record(3, user="user-1", amount=5000, minutes=2),
        record(4, user="user-3", amount=30, minutes=3),
        record(5, user="user-1", amount=25, minutes=4),
    ]


def test_every_valid_record_is_decided_once_with_one_predict_call():
    svc, ports = service()
    report = svc.process(batch())
    decisions = ports["decisions"].items
    assert sorted(decisions) == [f"tx-{i}" for i in range(1, 6)]
    assert decisions["tx-2"].decision is Decision.FLAGGED
    assert decisions["tx-3"].decision is Decision.REJECTED
    assert decisions["tx-1"].decision is Decision.APPROVED
    assert decisions["tx-3"].reasons == (Reason("amount", 5000, 1.0),)
    assert decisions["tx-1"].reasons == ()
    assert ports["model"].calls == 1
    assert report.failed == []
    assert report.quarantined == []
    assert len(report.latencies_ms) == 5


def test_alerts_only_for_flagged_and_rejected_with_the_transaction_as_id():
    svc, ports = service()
    svc.process(batch())
    assert sorted(a.transaction_id for a in ports["alerts"].published) == ["tx-2", "tx-3"]


def test_profiles_fold_each_users_records_in_stream_order():
    svc, ports = service()
    svc.process(batch())
    profiles = ports["profiles"].get_many(["user-1", "user-2", "user-3"]).users
    assert profiles["user-1"].count == 3
    assert profiles["user-1"].recent_amounts == [20.0, 5000.0, 25.0]
    assert profiles["user-1"].checkpoints == {"shardId-000000000000": 5}
    # tx-5 saw user-1's two earlier transactions of the same batch
    assert ports["decisions"].items["tx-5"].decision is Decision.APPROVED


def test_replaying_a_batch_changes_nothing():
    svc, ports = service()
    svc.process(batch())
    profiles_before = dict(ports["profiles"].items)
    decisions_before = dict(ports["decisions"].items)
    report = svc.process(batch())
    assert report.duplicates == 5
    assert report.decisions == []
    assert ports["profiles"].items == profiles_before
    assert ports["decisions"].items == decisions_before
    assert len(ports["alerts"].published) == 2


def test_a_transaction_delivered_twice_under_new_sequence_numbers_is_applied_once():
    svc, ports = service()
    svc.process([record(1, amount=900)])
    report = svc.process([StreamRecord("shardId-000000000001", "7", record(1, amount=900).data, T0)])
    assert report.duplicates == 1
    assert len(ports["alerts"].published) == 1


def test_malformed_records_go_to_quarantine_and_the_rest_is_decided():
    svc, ports = service()
    bad = [
        StreamRecord("shardId-000000000000", "10", b"{oops", T0),
        record(11, amount=-3),
        record(12, currency="???"),
    ]
    report = svc.process([*batch(), *bad])
    assert [(q.record.sequence_number, q.field) for q in ports["quarantine"].records] == [
        ("10", "payload"),
        ("11", "amount"),
        ("12", "currency"),
    ]
    assert len(ports["decisions"].items) == 5
    assert report.failed == []


def test_a_failed_decision_write_retries_that_users_records_and_keeps_its_profile():
    svc, ports = service(decisions=FlakyDecisions(fail={"tx-3"}))
    report = svc.process(batch())
    assert sorted(r.sequence_number for r in report.failed) == ["1", "3", "5"]  # all of user-1's
    assert "user-1" not in ports["profiles"].items
    assert "user-2" in ports["profiles"].items

    retry = svc.process(batch())
    assert sorted(d.transaction_id for d in retry.decisions) == ["tx-1", "tx-3", "tx-5"]
    assert retry.duplicates == 2
    assert sorted(ports["decisions"].items) == [f"tx-{i}" for i in range(1, 6)]
    assert ports["profiles"].get_many(["user-1"]).users["user-1"].count == 3


def test_a_crash_before_the_alert_resends_it_after_the_retry():
    publisher = CrashingPublisher()
    svc, ports = service(alerts=publisher)
    first = svc.process(batch())
    assert {r.sequence_number for r in first.failed} == {"1", "2", "3", "5"}  # users with alerts
    assert publisher.published == []
    svc.process(batch())
    assert sorted(a.transaction_id for a in publisher.published) == ["tx-2", "tx-3"]
    assert len(ports["decisions"].items) == 5


def test_an_unreadable_profile_store_fails_every_valid_record_and_writes_nothing():
    svc, ports = service(profiles=BrokenProfiles())
    report = svc.process([*batch(), StreamRecord("shardId-000000000000", "9", b"nope", T0)])
    assert len(report.failed) == 5
    assert isinstance(report.errors[0], ProfileStoreError)
    assert ports["decisions"].items == {}
    assert len(ports["quarantine"].records) == 1


def test_deploy_time_thresholds_override_the_bundles():
    svc, ports = service()
    svc.thresholds = Thresholds(flag=0.5, reject=0.55)
    svc.process(batch())
    assert ports["decisions"].items["tx-2"].decision is Decision.REJECTED


@pytest.mark.parametrize("amount", [0.01, 999_999.0])
def test_extreme_but_valid_amounts_are_decided(amount):
    svc, ports = service()
    svc.process([record(1, amount=amount)])
    assert "tx-1" in ports["decisions"].items


def test_a_given_up_record_is_decided_when_redriven_and_only_once():
    profiles = FakeProfileStore()
    profiles.raise_next = ProfileStoreError("throttled")
    svc, ports = service(profiles=profiles)
    assert [r.sequence_number for r in svc.process([record(1)]).failed] == ["1"]  # the mapping gives up
    svc.process([record(2, minutes=5)])  # the user's next record moves the shard checkpoint past it

    assert svc.process([record(1)]).duplicates == 1  # an ordinary redelivery is taken for a duplicate
    redriven = svc.process([record(1)], redrive=True)
    assert [d.transaction_id for d in redriven.decisions] == ["tx-1"]
    assert svc.process([record(1)], redrive=True).duplicates == 1  # and a second redrive changes nothing
    assert ports["profiles"].get_many(["user-1"]).users["user-1"].checkpoints == {"shardId-000000000000": 2}
