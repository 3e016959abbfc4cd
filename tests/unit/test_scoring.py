"""The scoring service on in-memory ports: decisions, quarantine, idempotency and partial failures."""

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from fraudwatch.adapters.memory import (
    MemoryAlertPublisher,
    MemoryDecisionStore,
    MemoryProfileStore,
    MemoryQuarantine,
)
from fraudwatch.domain.activity import MerchantActivity
from fraudwatch.domain.decision import Decision, DecisionRecord, Reason, Thresholds
from fraudwatch.domain.events import parse_event
from fraudwatch.domain.features import (
    ACTIVITY_FEATURES,
    DAY,
    FEATURE_NAMES,
    LABEL_FEATURES,
    MERCHANT_FEATURES,
    NO_MERCHANT,
)
from fraudwatch.domain.label import Label
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.records import StreamRecord
from fraudwatch.domain.scoring import LATENCY_HORIZON_S, ScoringService
from fraudwatch.errors import AlertPublishError, InvalidRecordError, ProfileStoreError
from infra.events import label_body
from tests.fakes import FakeAlertPublisher, FakeDecisionStore, FakeModel, FakeProfileStore

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
    def get_many(self, user_ids, merchant_ids=(), transaction_ids=()):
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


def service(**ports: Any) -> tuple[ScoringService, dict[str, Any]]:
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


def test_latency_is_measured_only_from_arrivals_within_the_streams_retention():
    """A sample event or a replayed file carries arrival times months old: no latency of months."""
    # The batch's records arrive one a minute, at T0 + 1 s ... T0 + 241 s; decided a day after the third.
    late = ScoringService(
        profiles=MemoryProfileStore(),
        decisions=MemoryDecisionStore(),
        alerts=MemoryAlertPublisher(),
        quarantine=MemoryQuarantine(),
        model=AmountModel(),
        clock=lambda: T0 + 121 + LATENCY_HORIZON_S,
    )
    report = late.process(batch())
    assert len(report.decisions) == 5  # all decided; only the last three arrived within a day
    assert sorted(report.latencies_ms) == [(LATENCY_HORIZON_S - s) * 1000 for s in (120, 60, 0)]


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
    assert profiles["user-1"].checkpoints == {"shardId-000000000000": "5"}
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
    svc, ports = service(thresholds=Thresholds(flag=0.5, reject=0.55))
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
    assert ports["profiles"].get_many(["user-1"]).users["user-1"].checkpoints == {"shardId-000000000000": "2"}


# Labels: partition key = merchant id, so here on their own shard.
LABEL_SHARD = "shardId-000000000001"
DAY0 = int(T0 // DAY)


def label(
    seq: int,
    *,
    tx: str = "tx-1",
    merchant: str = "merch-1",
    is_fraud: bool | object = True,
    minutes: float = 0.0,
    shard: str = LABEL_SHARD,
    **changes: object,
) -> StreamRecord:
    epoch = T0 + minutes * 60
    body = {**label_body(tx, merchant, is_fraud, _iso(epoch)), **changes}
    return StreamRecord(shard, str(seq), json.dumps(body).encode(), epoch + 1)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def stored_merchant(profiles: MemoryProfileStore, merchant_id: str) -> MerchantProfile:
    return profiles.get_many([], [merchant_id]).merchants[merchant_id]


def labels_of_two_merchants() -> list[StreamRecord]:
    return [
        label(101, tx="tx-a", merchant="merch-1", is_fraud=True, minutes=10),
        label(102, tx="tx-b", merchant="merch-2", is_fraud=False, minutes=11),
        label(103, tx="tx-c", merchant="merch-1", is_fraud=False, minutes=12),
        label(104, tx="tx-d", merchant="merch-1", is_fraud=True, minutes=13),
    ]


def test_labels_in_a_batch_are_counted_in_their_merchants_profiles():
    svc, ports = service()
    report = svc.process([*batch(), *labels_of_two_merchants()])
    assert report.labels == 4
    assert report.failed == []
    assert len(report.decisions) == 5
    assert stored_merchant(ports["profiles"], "merch-1").days == [[DAY0, 3, 2]]
    assert stored_merchant(ports["profiles"], "merch-2").days == [[DAY0, 1, 0]]
    assert stored_merchant(ports["profiles"], "merch-1").checkpoints == {LABEL_SHARD: "104"}


def test_a_labels_only_batch_scores_nothing_and_writes_no_decisions():
    profiles, decisions, alerts, model = (
        FakeProfileStore(),
        FakeDecisionStore(),
        FakeAlertPublisher(),
        FakeModel(),
    )
    svc, _ = service(profiles=profiles, decisions=decisions, alerts=alerts, model=model)
    report = svc.process(labels_of_two_merchants())
    assert report.labels == 4
    assert report.decisions == []
    assert report.latencies_ms == []
    assert model.batches == []
    assert (decisions.calls, alerts.calls) == (0, 0)
    assert profiles.items == {}  # no user profile written
    assert sorted(profiles.merchant_items) == ["merch-1", "merch-2"]


def test_a_redelivered_label_is_counted_once():
    svc, ports = service()
    svc.process(labels_of_two_merchants())
    stored = dict(ports["profiles"].merchant_items)

    redelivered = svc.process(labels_of_two_merchants())
    assert (redelivered.labels, redelivered.duplicates) == (0, 4)
    # The producer's retry: the same label under a new sequence number (here a later one, on another shard).
    retried = label(7, tx="tx-a", merchant="merch-1", minutes=30, shard="shardId-000000000002")
    again = svc.process([retried])
    assert (again.labels, again.duplicates) == (0, 1)
    assert ports["profiles"].merchant_items == stored


def test_the_same_label_twice_in_one_batch_is_counted_once():
    svc, ports = service()
    report = svc.process(
        [label(1, tx="tx-a"), label(2, tx="tx-a", minutes=1), label(3, tx="tx-b", minutes=2)]
    )
    assert (report.labels, report.duplicates) == (2, 1)
    assert stored_merchant(ports["profiles"], "merch-1").days == [[DAY0, 2, 2]]


def test_a_given_up_label_is_counted_when_redriven_and_only_once():
    profiles = FakeProfileStore()
    profiles.raise_next = ProfileStoreError("throttled")
    svc, _ = service(profiles=profiles)
    assert [r.sequence_number for r in svc.process([label(1, tx="tx-a")]).failed] == ["1"]
    svc.process(
        [label(2, tx="tx-b", minutes=5)]
    )  # the merchant's next label moves the shard checkpoint past it

    assert svc.process([label(1, tx="tx-a")]).duplicates == 1  # an ordinary redelivery: taken for a duplicate
    assert svc.process([label(1, tx="tx-a")], redrive=True).labels == 1
    assert svc.process([label(1, tx="tx-a")], redrive=True).duplicates == 1
    merchant = stored_merchant(profiles, "merch-1")
    assert merchant.days == [[DAY0, 2, 2]]
    assert merchant.checkpoints == {LABEL_SHARD: "2"}


def test_a_merchant_left_unwritten_retries_exactly_its_labels_and_keeps_its_profile():
    profiles = FakeProfileStore()
    svc, _ = service(profiles=profiles)
    svc.process([label(90, tx="tx-earlier", merchant="merch-1", is_fraud=False)])
    before = profiles.merchant_items["merch-1"]

    profiles.fail_next = {"merch-1"}
    report = svc.process([*batch(), *labels_of_two_merchants()])
    assert sorted(r.sequence_number for r in report.failed) == ["101", "103", "104"]
    assert report.labels == 1  # merch-2's
    assert len(report.decisions) == 5  # transactions do not wait on merchant writes
    assert profiles.merchant_items["merch-1"] == before

    retry = svc.process([*batch(), *labels_of_two_merchants()])
    assert (retry.labels, retry.duplicates) == (3, 5 + 1)
    assert retry.failed == []
    assert stored_merchant(profiles, "merch-1").days == [[DAY0, 4, 2]]


class MerchantWritesRaise(FakeProfileStore):
    """Reads and user writes work; every merchant write raises, as a throttled table does."""

    def put_merchants(self, profiles: Sequence[MerchantProfile], labels: Sequence[Label] = ()) -> set[str]:
        self.raise_next = ProfileStoreError("merchant table throttled")
        return super().put_merchants(profiles, labels)


def test_a_raising_merchant_write_retries_every_label_and_only_the_labels():
    profiles = MerchantWritesRaise()
    svc, _ = service(profiles=profiles)
    labels = labels_of_two_merchants()
    report = svc.process([*batch(), *labels])
    assert sorted(r.sequence_number for r in report.failed) == sorted(r.sequence_number for r in labels)
    assert [type(e) for e in report.errors] == [ProfileStoreError]
    assert report.labels == 0
    assert len(report.decisions) == 5
    assert sorted(profiles.items) == ["user-1", "user-2", "user-3"]
    assert profiles.merchant_items == {}


def test_malformed_labels_are_quarantined_with_their_reason():
    svc, ports = service()
    bad = [label(201, is_fraud="yes"), label(202, event="chargeback"), label(203, labelled_at="2026-11-30")]
    report = svc.process([*bad, label(204, tx="tx-ok")])
    quarantined = {q.record.sequence_number: q for q in ports["quarantine"].records}
    assert {seq: q.field for seq, q in quarantined.items()} == {
        "201": "is_fraud",
        "202": "event",
        "203": "labelled_at",
    }
    for record in bad:
        with pytest.raises(InvalidRecordError) as caught:
            parse_event(record.data, received_at=record.arrival_epoch)
        assert quarantined[record.sequence_number].reason == caught.value.reason
    assert report.labels == 1
    assert report.failed == []


def test_a_later_batchs_merchant_features_reflect_the_labels_applied_earlier():
    model = FakeModel()
    svc, _ = service(model=model)
    svc.process([*labels_of_two_merchants(), record(1, minutes=20)])  # merch-1, the same day as its labels
    svc.process(
        [
            record(2, minutes=24 * 60),  # merch-1, the next day
            record(3, user="user-2", minutes=24 * 60 + 1, merchant_id="merch-9"),  # no labels
        ]
    )
    same_day, next_day, unlabelled = (dict(zip(FEATURE_NAMES, row, strict=True)) for row in model.rows)
    assert same_day["merchant_labels_1d"] == 0.0
    assert [next_day[name] for name in LABEL_FEATURES] == [3.0, 2 / 3, 3.0, 2 / 3, 3.0, 2 / 3]
    assert all(
        same(unlabelled[name], value) for name, value in zip(MERCHANT_FEATURES, NO_MERCHANT, strict=True)
    )


def test_a_batch_spanning_midnight_scores_with_the_labels_known_before_it():
    """Labels are applied before transactions are scored, as a replay in time order would."""
    model = FakeModel()
    svc, _ = service(model=model)
    midnight = (DAY0 + 1) * DAY
    after = record(1, minutes=(midnight + 600 - T0) / 60)  # 00:10 the next day
    before = label(2, tx="tx-a", minutes=(midnight - 600 - T0) / 60)  # 23:50, behind it in the batch
    svc.process([after, before])
    (row,) = model.rows
    assert row[FEATURE_NAMES.index("merchant_labels_1d")] == 1.0


def test_records_put_with_another_partition_key_are_processed_and_counted_as_misrouted():
    svc, ports = service()
    routed = [
        record(1, user="user-1")._replace(partition_key="user-1"),
        record(2, user="user-2")._replace(partition_key="merch-1"),  # a transaction keyed by its merchant
        label(3, tx="tx-1", merchant="merch-1")._replace(partition_key="merch-1"),
        label(4, tx="tx-2", merchant="merch-2")._replace(partition_key="user-2"),  # a label keyed by a user
        record(5, user="user-3"),  # the key unknown (not from Kinesis): nothing to check
        record(6, user="user-4", amount=-1)._replace(partition_key="merch-1"),  # malformed: quarantined only
    ]
    report = svc.process(routed)
    assert report.misrouted == 2
    assert sorted(ports["decisions"].items) == ["tx-1", "tx-2", "tx-5"]
    assert report.labels == 2
    assert [q.record.sequence_number for q in report.quarantined] == ["6"]


def test_a_changed_verdict_counts_as_a_label_of_its_own_and_the_same_verdict_again_does_not():
    svc, ports = service()
    svc.process([label(101, tx="tx-a", is_fraud=False, minutes=10)])  # confirmed genuine first
    report = svc.process(
        [
            label(102, tx="tx-a", is_fraud=True, minutes=20),  # later charged back
            label(103, tx="tx-a", is_fraud=True, minutes=21),  # the chargeback put again by its producer
        ]
    )
    assert (report.labels, report.duplicates) == (1, 1)
    merchant = stored_merchant(ports["profiles"], "merch-1")
    assert merchant.days == [[DAY0, 2, 1]]
    assert list(merchant.applied_ids) == ["tx-a:genuine", "tx-a:fraud"]


def activity(
    seq: int, *, merchant: str = "merch-1", on: int = DAY0 - 1, counts=(6, 4, 2), **changes
) -> StreamRecord:
    """A merchant's payments of day `on`, put on the stream the midnight after it by the daily count."""
    body = {"event": "activity", **MerchantActivity(merchant, on, *counts).to_mapping(), **changes}
    return StreamRecord(LABEL_SHARD, str(seq), json.dumps(body).encode(), (on + 1) * DAY + 60)


def test_a_days_activity_sets_its_counts_and_the_next_days_payments_read_them():
    model = FakeModel()
    svc, ports = service(model=model)
    report = svc.process([activity(301, on=DAY0 - 1), record(1)])
    assert report.activities == 1
    assert stored_merchant(ports["profiles"], "merch-1").activity == {DAY0 - 1: [6, 4, 2]}
    row = dict(zip(FEATURE_NAMES, model.rows[0], strict=True))
    assert [row[name] for name in ACTIVITY_FEATURES] == [6.0, 30.0, 0.5, 0.5, 0.5]


def test_a_day_counted_again_leaves_what_one_count_leaves():
    """The daily count run twice (new sequence numbers), or a redelivery: the counts are set, not added."""
    svc, ports = service()
    svc.process([activity(301, counts=(6, 4, 2))])
    once = stored_merchant(ports["profiles"], "merch-1").to_json()
    redelivered = svc.process([activity(301, counts=(6, 4, 2))])
    assert redelivered.duplicates == 1
    again = svc.process([activity(302, counts=(6, 4, 2))])
    assert again.activities == 1
    assert json.loads(stored_merchant(ports["profiles"], "merch-1").to_json())["a"] == json.loads(once)["a"]
    corrected = svc.process([activity(303, counts=(7, 5, 2))])  # recounted after a late decision
    assert corrected.activities == 1
    assert stored_merchant(ports["profiles"], "merch-1").activity == {DAY0 - 1: [7, 5, 2]}


def test_an_activity_record_counts_while_its_day_may_still_change():
    """The daily count at 00:05 recounts the 7 days ending yesterday: the oldest began 7 days and 5
    minutes before, and ended 6 days before; a payment of it may still arrive. A day ended more than the
    stream's 7 days before, or not begun, is refused."""
    svc, ports = service()
    at = DAY0 * DAY + 300
    records = [
        StreamRecord(LABEL_SHARD, str(n), activity(0, on=day).data, at)
        for n, day in enumerate((DAY0 - 7, DAY0 - 8, DAY0 + 1), start=401)
    ]
    report = svc.process(records)
    assert report.activities == 1
    assert stored_merchant(ports["profiles"], "merch-1").activity == {DAY0 - 7: [6, 4, 2]}
    assert [(q.field, q.reason) for q in report.quarantined] == [
        ("day", "ended more than 7 days in the past"),
        ("day", "has not begun"),
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"day": "2026-13-01"}, "day"),
        ({"day": "yesterday"}, "day"),
        ({"payments": -1}, "payments"),
        ({"cards": 2.5}, "cards"),
        ({"new_cards": 9}, "cards"),
        ({"merchant_id": ""}, "merchant_id"),
    ],
)
def test_a_malformed_activity_record_is_quarantined_naming_its_field(changes, field):
    svc, _ = service()
    report = svc.process([activity(301, **changes)])
    assert [q.field for q in report.quarantined] == [field]
    assert report.activities == 0
