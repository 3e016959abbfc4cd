"""Two writers of user profiles (the stream and the inline API): a write that lost the race is recomputed."""

import json
from collections.abc import Callable, Sequence

from fraudwatch.adapters.memory import MemoryAlertPublisher, MemoryDecisionStore, MemoryQuarantine
from fraudwatch.domain.decision import Decision, DecisionRecord
from fraudwatch.domain.records import StreamRecord
from fraudwatch.domain.scoring import CONFLICT_ROUNDS, VERSION_CONFLICT, ScoringService
from fraudwatch.domain.transaction import Transaction, parse_transaction
from fraudwatch.errors import ProfileStoreError
from tests.fakes import FakeProfileStore
from tests.unit.test_scoring import T0, AmountModel, record


def scoring(profiles: FakeProfileStore) -> tuple[ScoringService, MemoryDecisionStore, MemoryAlertPublisher]:
    """A writer of `profiles`; its decisions go to the store that inline ones share with the profiles."""
    assert profiles.decisions is not None
    decisions, alerts = profiles.decisions, MemoryAlertPublisher()
    svc = ScoringService(
        profiles=profiles,
        decisions=decisions,
        alerts=alerts,
        quarantine=MemoryQuarantine(),
        model=AmountModel(),
        clock=lambda: T0 + 3600,
    )
    return svc, decisions, alerts


def inline(seq: int, **kwargs) -> tuple[StreamRecord, Transaction]:
    """A transaction as the API hands it over: validated, from no shard."""
    stream = record(seq, **kwargs)
    api = StreamRecord("api", "0", stream.data, stream.arrival_epoch, from_shard=False)
    return api, parse_transaction(api.data, received_at=api.arrival_epoch)


def test_a_profile_changed_by_another_writer_is_reread_and_its_users_records_scored_again():
    profiles = FakeProfileStore(MemoryDecisionStore())
    stream, decisions, _ = scoring(profiles)
    api, _, _ = scoring(profiles)
    api_record, api_tx = inline(100, user="user-1", amount=600, minutes=0.5)
    # The API decides user-1's payment between the stream's read and its write.
    profiles.before_put = lambda: api.decide_one(api_record, api_tx)

    report = stream.process([record(1, user="user-1", minutes=0), record(2, user="user-2", minutes=0)])

    assert report.conflicts == 1
    assert report.failed == []
    assert sorted(d.transaction_id for d in report.decisions) == ["tx-1", "tx-2"]
    user = profiles.get_many(["user-1"]).users["user-1"]
    assert user.count == 2  # the API's payment and the stream's: no update lost
    assert list(user.applied_ids) == ["tx-100", "tx-1"]
    assert user.version == 2
    assert set(decisions.items) == {"tx-1", "tx-2", "tx-100"}


class HookedDecisions(MemoryDecisionStore):
    """Decisions; `before_put`, when set, runs once, before the next write."""

    def __init__(self) -> None:
        super().__init__()
        self.before_put: Callable[[], object] | None = None

    def put_many(self, decisions: Sequence[DecisionRecord]) -> set[str]:
        hook, self.before_put = self.before_put, None
        if hook is not None:
            hook()
        return super().put_many(decisions)


def test_the_same_transaction_by_the_api_first_then_the_stream_counts_once():
    decisions = HookedDecisions()
    profiles = FakeProfileStore(decisions)
    stream, _, _ = scoring(profiles)
    api, _, _ = scoring(profiles)
    api_record, api_tx = inline(1, amount=700)
    answers = []
    # The API decides the payment between the stream's read and its first write.
    decisions.before_put = lambda: answers.append(api.decide_one(api_record, api_tx))

    report = stream.process([record(1, amount=700)])

    assert [d.transaction_id for d in answers[0].decisions] == ["tx-1"]  # the API's decision, new
    assert (report.conflicts, report.duplicates, report.decisions, report.failed) == (1, 1, [], [])
    assert profiles.get_many(["user-1"]).users["user-1"].count == 1
    assert decisions.items["tx-1"] == answers[0].decisions[0]


def test_the_same_transaction_decided_on_the_stream_is_the_apis_answer_and_counts_once():
    profiles = FakeProfileStore(MemoryDecisionStore())
    stream, decisions, _ = scoring(profiles)
    api, _, _ = scoring(profiles)
    api_record, api_tx = inline(1, amount=700)
    answers = []
    # The API asks between the stream's decision write and its profile write.
    profiles.before_put = lambda: answers.append(api.decide_one(api_record, api_tx))

    report = stream.process([record(1, amount=700)])

    assert (report.conflicts, report.duplicates, report.failed) == (0, 0, [])
    assert [d.transaction_id for d in report.decisions] == ["tx-1"]
    assert (answers[0].decisions, answers[0].known, answers[0].duplicates) == ([], report.decisions, 1)
    assert profiles.get_many(["user-1"]).users["user-1"].count == 1
    assert decisions.items["tx-1"].decision is Decision.FLAGGED


class EverChanging(FakeProfileStore):
    """Another writer changes user-1's profile before every one of this writer's writes."""

    def put_many(self, profiles, decisions=()):
        self.versions["user-1"] = self.versions.get("user-1", 0) + 1
        return super().put_many(profiles, decisions)


def test_a_profile_that_keeps_changing_leaves_its_records_to_the_retry_after_the_last_round():
    profiles = EverChanging(MemoryDecisionStore())
    svc, _, _ = scoring(profiles)

    report = svc.process([record(1, user="user-1"), record(2, user="user-2")])

    assert [r.sequence_number for r in report.failed] == ["1"]
    assert [d.transaction_id for d in report.decisions] == ["tx-2"]
    assert report.conflicts == CONFLICT_ROUNDS
    (error,) = report.errors
    assert isinstance(error, ProfileStoreError)
    assert (error.code, error.retryable, error.unwritten) == (VERSION_CONFLICT, True, frozenset({"user-1"}))


def test_an_inline_transaction_is_applied_by_its_id_only_and_a_second_post_is_a_duplicate():
    profiles = FakeProfileStore(MemoryDecisionStore())
    svc, decisions, _ = scoring(profiles)
    api_record, api_tx = inline(1, amount=20)

    first = svc.decide_one(api_record, api_tx)
    again = svc.decide_one(api_record, api_tx)

    assert [d.transaction_id for d in first.decisions] == ["tx-1"]
    assert (again.decisions, again.duplicates) == ([], 1)
    user = profiles.get_many(["user-1"]).users["user-1"]
    assert user.checkpoints == {}  # no shard, no checkpoint
    # the same payment on the stream afterwards is recognised by its id
    assert svc.process([record(1, amount=20)]).duplicates == 1
    assert json.loads(api_record.data)["transaction_id"] in decisions.items
