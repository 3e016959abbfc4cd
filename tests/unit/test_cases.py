"""Review cases in the domain: opening, the transitions and their audit trail, and the service's close
(label, block list), on in-memory ports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from fraudwatch.adapters.memory import MemoryDecisionStore
from fraudwatch.domain.cases import (
    BLOCK_LIST,
    MAX_EVENTS,
    BlockChange,
    Case,
    CaseConflict,
    CaseNotFound,
    CaseOpener,
    CasePage,
    CaseService,
    CaseStatus,
    QueueFilter,
    Verdict,
    assigned,
    closed,
    commented,
    decision_from_alert,
    open_case,
    verdict_of,
)
from fraudwatch.domain.decision import Decision, DecisionRecord, Reason, Thresholds
from fraudwatch.domain.label import label_from_mapping
from fraudwatch.domain.lists import ListEntry
from fraudwatch.errors import InvalidRecordError

NOW = 1_790_000_000.0
AT = "2026-09-21T12:00:00+00:00"


def decision(
    tx: str = "tx-1", user: str = "user-1", kind: Decision = Decision.FLAGGED, **kw: Any
) -> DecisionRecord:
    fields: dict[str, Any] = {
        "transaction_id": tx,
        "user_id": user,
        "merchant_id": "merch-1",
        "amount": 950.0,
        "currency": "EUR",
        "transaction_time": "2026-09-21T11:59:00+00:00",
        "decision": kind,
        "score": 0.71,
        "model_version": "m1",
        "thresholds": Thresholds(0.5, 0.9),
        "decided_at": "2026-09-21T11:59:01+00:00",
        "reasons": (Reason("amount_zscore", 6.2, 1.4), Reason("velocity_1h", None, 0.3)),
        "rule_reasons": ("rule:big-night",),
    } | kw
    return DecisionRecord(**fields)


class MemoryCaseStore:
    """Cases in a dict with the table's conditions: open only if absent, save only over the version read."""

    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}

    def open(self, case: Case) -> bool:
        if case.case_id in self.cases:
            return False
        self.cases[case.case_id] = case
        return True

    def get(self, case_id: str) -> Case | None:
        return self.cases.get(case_id)

    def save(self, case: Case, read_version: int) -> None:
        if self.cases[case.case_id].version != read_version:
            raise CaseConflict(case.case_id)
        self.cases[case.case_id] = case

    def queue(self, where: QueueFilter, limit: int, cursor: str | None) -> CasePage:
        found = sorted((c for c in self.cases.values() if where.matches(c)), key=lambda c: c.status_at)
        return CasePage(found[:limit], None)


class Labels:
    def __init__(self) -> None:
        self.put: list[Mapping[str, Any]] = []

    def put_label(self, label: Mapping[str, Any]) -> None:
        self.put.append(dict(label))


class Lists:
    """Entries by (list, value), as the lists table keys them; `added` keeps every put."""

    def __init__(self) -> None:
        self.added: list[ListEntry] = []
        self.entries: dict[tuple[str, str], ListEntry] = {}

    def add(self, entries: list[ListEntry]) -> None:
        self.added.extend(entries)
        self.entries.update({(e.list_name, e.value): e for e in entries})

    def entry(self, list_name: str, value: str) -> ListEntry | None:
        return self.entries.get((list_name, value))

    def remove_entry(self, entry: ListEntry) -> bool:
        found = self.entries.get((entry.list_name, entry.value))
        if found is None or (found.added_by, found.reason) != (entry.added_by, entry.reason):
            return False
        del self.entries[(entry.list_name, entry.value)]
        return True


@pytest.fixture
def service() -> CaseService:
    store = MemoryCaseStore()
    store.open(open_case(decision(), [], AT))
    return CaseService(store, Labels(), Lists(), clock=lambda: NOW)


def test_an_alert_opens_a_case_once_with_the_users_decisions_before_it():
    decisions = MemoryDecisionStore()
    earlier = [
        decision(f"tx-{i}", kind=Decision.APPROVED, decided_at=f"2026-09-2{i}T00:00:00+00:00")
        for i in range(3)
    ]
    alerted = decision("tx-9", decided_at="2026-09-29T00:00:00+00:00")
    decisions.put_many([*earlier, alerted, decision("tx-other", user="user-2")])
    store = MemoryCaseStore()
    opener = CaseOpener(store, decisions, clock=lambda: NOW)

    assert opener.open(alerted) is True
    assigned_case = replace(store.cases["tx-9"], assignee="ana", version=1)
    store.cases["tx-9"] = assigned_case
    assert opener.open(alerted) is False  # redelivered: nothing new, nothing overwritten
    assert store.cases["tx-9"] is assigned_case
    case = store.cases["tx-9"]
    assert [r.transaction_id for r in case.recent] == ["tx-2", "tx-1", "tx-0"]
    assert case.status is CaseStatus.OPEN
    assert case.history[0].action == "opened"


def test_an_alert_body_round_trips_and_a_broken_one_names_its_field():
    alerted = decision()
    assert decision_from_alert(alerted.to_dict()) == alerted
    body = alerted.to_dict()
    del body["merchant_id"]
    with pytest.raises(InvalidRecordError) as missing:
        decision_from_alert(body)
    assert missing.value.field == "merchant_id"
    with pytest.raises(InvalidRecordError) as empty:
        decision_from_alert(alerted.to_dict() | {"user_id": ""})
    assert empty.value.field == "user_id"


def test_closing_twice_with_the_same_verdict_changes_nothing_and_a_changed_verdict_is_recorded():
    case = open_case(decision(), [], AT)
    first = closed(case, Verdict.GENUINE, "customer confirmed", by="ana", at="t1")
    assert first is not None
    once = first[0]
    assert closed(once, Verdict.GENUINE, "again", by="bob", at="t2") is None
    changed = closed(once, Verdict.FRAUD, "chargeback came in", by="bob", at="t3")
    assert changed is not None
    case_now, event = changed
    assert (case_now.verdict, case_now.closed_by, case_now.closed_at) == (Verdict.FRAUD, "bob", "t3")
    assert event.action == "verdict changed"
    assert event.detail.startswith("genuine -> fraud")
    assert [e.action for e in case_now.history] == ["opened", "closed", "verdict changed"]
    assert case_now.version == 2


def test_transitions_refuse_bad_input_naming_the_field():
    case = open_case(decision(), [], AT)
    with pytest.raises(InvalidRecordError) as no_reason:
        closed(case, Verdict.FRAUD, "  ", by="ana", at="t")
    assert no_reason.value.field == "reason"
    with pytest.raises(InvalidRecordError) as bad_assignee:
        assigned(case, "two words", by="ana", at="t")
    assert bad_assignee.value.field == "assignee"
    with pytest.raises(InvalidRecordError) as bad_verdict:
        verdict_of("maybe")
    assert bad_verdict.value.field == "verdict"
    with pytest.raises(InvalidRecordError) as long_comment:
        commented(case, "x" * 1001, by="ana", at="t")
    assert long_comment.value.field == "comment"
    closed_case = closed(case, Verdict.FRAUD, "seen", by="ana", at="t")
    assert closed_case is not None
    with pytest.raises(InvalidRecordError) as assign_closed:
        assigned(closed_case[0], "bob", by="ana", at="t")
    assert assign_closed.value.field == "status"


def test_a_full_history_refuses_more_events():
    case = open_case(decision(), [], AT)
    case = replace(case, history=case.history * MAX_EVENTS)
    with pytest.raises(InvalidRecordError) as full:
        commented(case, "one more", by="ana", at="t")
    assert full.value.field == "history"


def test_close_as_fraud_puts_a_valid_label_keyed_by_merchant_and_can_block_the_user(service: CaseService):
    closing = service.close("tx-1", Verdict.FRAUD, "card reported stolen", by="ana", block=True)
    case = closing.case

    assert case.status is CaseStatus.CLOSED
    assert case.verdict is Verdict.FRAUD
    labels = service.labels.put  # type: ignore[attr-defined]
    assert len(labels) == 1
    label = label_from_mapping(labels[0], received_at=NOW)  # the stream's own contract accepts it
    assert (label.transaction_id, label.merchant_id, label.is_fraud) == ("tx-1", "merch-1", True)
    [entry] = service.lists.added  # type: ignore[union-attr]
    assert (entry.list_name, entry.value, entry.added_by) == (BLOCK_LIST, "user-1", "ana")
    assert (closing.block, closing.block_note) == (BlockChange.ADDED, "user-1 is on blocked_users")
    assert (case.history[-1].action, case.history[-1].by) == ("blocked", "ana")  # the audit trail says so


def test_a_verdict_changed_to_genuine_lifts_the_block_this_case_put_and_says_so(service: CaseService):
    service.close("tx-1", Verdict.FRAUD, "card reported stolen", by="ana", block=True)

    reversed_ = service.close("tx-1", Verdict.GENUINE, "the cardholder found it", by="bob")

    assert service.lists.entries == {}  # type: ignore[union-attr]
    assert reversed_.block is BlockChange.LIFTED
    assert reversed_.block_note == "user-1 is off blocked_users: this case's fraud verdict had put them there"
    assert [(e.action, e.by) for e in reversed_.case.history[1:]] == [
        ("closed", "ana"),
        ("blocked", "ana"),
        ("verdict changed", "bob"),
        ("block lifted", "bob"),
    ]
    assert reversed_.to_dict()["block"]["outcome"] == "lifted"
    again = service.close("tx-1", Verdict.GENUINE, "the cardholder found it", by="bob")
    assert (again.case, again.block) == (reversed_.case, None)  # nothing more to lift, nothing recorded


def test_a_verdict_changed_to_genuine_never_lifts_someone_elses_entry_and_says_how_to(
    service: CaseService,
):
    lists: Lists = service.lists  # type: ignore[assignment]
    service.close("tx-1", Verdict.FRAUD, "stolen", by="ana", block=True)
    theirs = ListEntry(BLOCK_LIST, "user-1", "risk-team", "chargebacks on three cards", NOW)
    lists.add([theirs])  # replaced since: the entry is now the risk team's

    kept = service.close("tx-1", Verdict.GENUINE, "found it", by="bob")

    assert lists.entries[(BLOCK_LIST, "user-1")] == theirs
    assert kept.block is BlockChange.KEPT
    assert "user-1 stays on blocked_users" in kept.block_note
    assert "fraudwatch lists remove blocked_users user-1" in kept.block_note
    assert "block lifted" not in [e.action for e in kept.case.history]


def test_a_fraud_verdict_without_block_changed_to_genuine_leaves_an_existing_entry(service: CaseService):
    lists: Lists = service.lists  # type: ignore[assignment]
    theirs = ListEntry(BLOCK_LIST, "user-1", "risk-team", "known mule", NOW)
    lists.add([theirs])
    service.close("tx-1", Verdict.FRAUD, "stolen", by="ana")

    kept = service.close("tx-1", Verdict.GENUINE, "found it", by="ana")

    assert lists.entries[(BLOCK_LIST, "user-1")] == theirs
    assert kept.block is BlockChange.KEPT


def test_close_again_with_the_same_verdict_keeps_the_case_and_puts_the_same_verdict_again(
    service: CaseService,
):
    first = service.close("tx-1", Verdict.GENUINE, "known customer", by="ana").case
    again = service.close("tx-1", Verdict.GENUINE, "known customer", by="ana").case
    assert again == first
    labels = service.labels.put  # type: ignore[attr-defined]
    assert [label["is_fraud"] for label in labels] == [False, False]  # counted once: same applied id


def test_blocking_needs_a_fraud_verdict_and_unknown_cases_are_not_found(service: CaseService):
    with pytest.raises(InvalidRecordError) as genuine_block:
        service.close("tx-1", Verdict.GENUINE, "fine", by="ana", block=True)
    assert genuine_block.value.field == "block"
    with pytest.raises(CaseNotFound):
        service.assign("tx-none", "ana", by="ana")


def test_assign_and_comment_are_recorded_and_a_stale_write_is_a_conflict(service: CaseService):
    service.assign("tx-1", "ana", by="lead")
    assert service.assign("tx-1", "ana", by="lead").version == 1  # the same assignee: no change
    case = service.comment("tx-1", "called the cardholder", by="ana")
    assert [(e.action, e.by, e.detail) for e in case.history[1:]] == [
        ("assigned", "lead", "ana"),
        ("commented", "ana", "called the cardholder"),
    ]
    stale = replace(case, assignee="bob")
    with pytest.raises(CaseConflict):
        service.store.save(stale, 0)


def test_the_queue_filters_by_reason_rule_and_merchant():
    store = MemoryCaseStore()
    store.open(open_case(decision("tx-a"), [], "2026-09-21T10:00:00+00:00"))
    store.open(
        open_case(decision("tx-b", merchant_id="merch-2", rule_reasons=()), [], "2026-09-21T09:00:00+00:00")
    )
    service = CaseService(store, Labels())

    assert [c.case_id for c in service.queue(QueueFilter()).cases] == ["tx-b", "tx-a"]  # oldest first
    assert [c.case_id for c in service.queue(QueueFilter(rule="rule:big-night")).cases] == ["tx-a"]
    assert [c.case_id for c in service.queue(QueueFilter(merchant="merch-2")).cases] == ["tx-b"]
    assert [c.case_id for c in service.queue(QueueFilter(reason="velocity_1h")).cases] == ["tx-b", "tx-a"]
    assert service.queue(QueueFilter(reason="hour_of_day")).cases == []


def test_a_queue_filter_refuses_a_reason_that_is_no_feature_and_a_rule_that_is_no_code():
    with pytest.raises(InvalidRecordError) as reason:
        QueueFilter(reason="amount_z_score")
    assert reason.value.field == "reason"
    assert "amount_zscore" in reason.value.reason  # the names it could be
    with pytest.raises(InvalidRecordError) as rule:
        QueueFilter(rule="night-spend")
    assert rule.value.field == "rule"
    assert "rule:<id>" in rule.value.reason
    assert QueueFilter(reason="amount_zscore", rule="list:review_categories").rule == "list:review_categories"
