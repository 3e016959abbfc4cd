"""Review cases: a FLAGGED payment opened for an analyst, worked, and closed with a verdict.

A case is opened once per alerted transaction (its id is the transaction id) from the decision the
alert carries, with a snapshot of the user's recent decisions. What the alert says never changes
afterwards: opening is a conditional put, so an alert delivered again opens nothing and can never
reopen or overwrite a case an analyst has assigned or closed. Everything an analyst does goes through
the pure transitions below (`assigned`, `commented`, `closed`), each returning the new case and the
event it adds to the case's history, or None when it changes nothing (closing twice with the same
verdict, assigning to the one already assigned). The store writes a new case only if its version is
still the one read, so two analysts cannot lose each other's work.

A verdict teaches the stack: `CaseService.close` puts a label (the existing label contract, partition
key merchant_id) on the stream, so merchant risk, backtests and retraining see it, and a fraud verdict
can put the user on the `blocked_users` list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from fraudwatch.domain.decision import Decision, DecisionRecord, Reason, Thresholds
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.lists import MAX_REASON_CHARS, ListEntry
from fraudwatch.domain.ports import DecisionReader
from fraudwatch.domain.transaction import id_problem
from fraudwatch.errors import FraudwatchError, InvalidRecordError

MAX_EVENTS = 200
"""Events a case's history keeps at most (an item stays far below DynamoDB's 400 KB)."""
MAX_TEXT_CHARS = 1000
"""A comment's or a verdict reason's length at most."""
RECENT_DECISIONS = 10
"""The user's decisions before the alerted one that a case keeps."""
BLOCK_LIST = "blocked_users"
"""Where a fraud verdict puts the user when asked to (a list that rejects the user's payments)."""


class CaseStatus(StrEnum):
    """Where a case is in its life."""

    OPEN = "OPEN"
    CLOSED = "CLOSED"


def status_of(raw: str) -> CaseStatus:
    """A status from its name in either case (`open`, `OPEN`), or InvalidRecordError naming `status`."""
    try:
        return CaseStatus(raw.strip().upper())
    except ValueError:
        raise InvalidRecordError(
            "status", f"{raw!r} is not one of {', '.join(s.value.lower() for s in CaseStatus)} (either case)"
        ) from None


class Verdict(StrEnum):
    """An analyst's conclusion on the payment."""

    FRAUD = "fraud"
    GENUINE = "genuine"


class CaseError(FraudwatchError):
    """Base of the errors of working a case."""


class CaseNotFound(CaseError):
    """No case has this id."""

    def __init__(self, case_id: str) -> None:
        super().__init__(f"no case {case_id!r}")
        self.case_id = case_id


class CaseConflict(CaseError):
    """Someone else changed the case since it was read: read it again, then decide again."""


class CaseEvent(NamedTuple):
    """One line of a case's audit trail: when, who, what, and the detail (a verdict, a comment, ...)."""

    at: str
    by: str
    action: str
    detail: str = ""


class RecentDecision(NamedTuple):
    """One of the user's decisions before the alerted one, as the case shows it."""

    transaction_id: str
    merchant_id: str
    amount: float
    currency: str
    decision: str
    score: float
    decided_at: str


@dataclass(frozen=True, slots=True)
class Case:
    """A review case: what the alert said (immutable), and the analysts' state and history."""

    decision: DecisionRecord
    opened_at: str
    recent: tuple[RecentDecision, ...] = ()
    status: CaseStatus = CaseStatus.OPEN
    assignee: str | None = None
    verdict: Verdict | None = None
    verdict_reason: str = ""
    closed_at: str | None = None
    closed_by: str | None = None
    history: tuple[CaseEvent, ...] = ()
    version: int = 0
    """How many times analysts changed it: the store writes version n+1 only over version n."""

    @property
    def case_id(self) -> str:
        """A case per alerted transaction: its id is the transaction's."""
        return self.decision.transaction_id

    @property
    def status_at(self) -> str:
        """When it entered its status: opened (the queue's age), or last given a verdict."""
        return self.closed_at if self.status is CaseStatus.CLOSED and self.closed_at else self.opened_at

    @property
    def reason_features(self) -> tuple[str, ...]:
        """The features among the decision's top reasons (what `--reason` filters on)."""
        return tuple(reason.feature for reason in self.decision.reasons)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the API's body for a case."""
        return {
            "case_id": self.case_id,
            "status": self.status.value,
            "opened_at": self.opened_at,
            "assignee": self.assignee,
            "verdict": None if self.verdict is None else self.verdict.value,
            "verdict_reason": self.verdict_reason,
            "closed_at": self.closed_at,
            "closed_by": self.closed_by,
            "decision": self.decision.to_dict(),
            "recent_decisions": [r._asdict() for r in self.recent],
            "history": [e._asdict() for e in self.history],
            "version": self.version,
        }


def open_case(decision: DecisionRecord, recent: list[DecisionRecord], opened_at: str) -> Case:
    """The case an alerted decision opens, with the user's decisions before it (newest first)."""
    before = [d for d in recent if d.transaction_id != decision.transaction_id][:RECENT_DECISIONS]
    return Case(
        decision=decision,
        opened_at=opened_at,
        recent=tuple(
            RecentDecision(
                d.transaction_id, d.merchant_id, d.amount, d.currency, d.decision.value, d.score, d.decided_at
            )
            for d in before
        ),
        history=(
            CaseEvent(opened_at, "fraudwatch", "opened", f"{decision.decision.value} {decision.score:.3f}"),
        ),
    )


def decision_from_alert(body: Mapping[str, Any]) -> DecisionRecord:
    """The decision an alert carries (its body is `DecisionRecord.to_dict`); InvalidRecordError names
    the first field missing or malformed."""
    try:
        thresholds = body["thresholds"]
        return DecisionRecord(
            transaction_id=_text(body, "transaction_id"),
            user_id=_text(body, "user_id"),
            merchant_id=_text(body, "merchant_id"),
            amount=float(body["amount"]),
            currency=_text(body, "currency"),
            transaction_time=_text(body, "transaction_time"),
            decision=Decision(body["decision"]),
            score=float(body["score"]),
            model_version=str(body.get("model_version", "")),
            thresholds=Thresholds(float(thresholds["flag"]), float(thresholds["reject"])),
            decided_at=_text(body, "decided_at"),
            reasons=tuple(
                Reason(
                    str(r["feature"]),
                    None if r.get("value") is None else float(r["value"]),
                    float(r["contribution"]),
                )
                for r in body.get("reasons", [])
            ),
            rule_reasons=tuple(str(code) for code in body.get("rule_reasons", [])),
            rules_version=str(body.get("rules_version", "")),
        )
    except KeyError as exc:
        raise InvalidRecordError(str(exc.args[0]), "missing") from exc
    except (TypeError, ValueError) as exc:
        raise InvalidRecordError("alert", f"not a decision record: {exc}") from exc


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str) or not value:
        raise InvalidRecordError(name, "expected a non-empty string")
    return value


# ------------------------------------------------------------------------------------------ transitions


def analyst_problem(name: str) -> str | None:
    """Why `name` cannot name an analyst, or None (an id: no spaces, 1-128 characters)."""
    return id_problem(name)


def _text_problem(text: str, what: str) -> str | None:
    if not text.strip():
        return f"{what} is empty"
    if len(text) > MAX_TEXT_CHARS:
        return f"{what} is over {MAX_TEXT_CHARS} characters"
    return None


def _with(case: Case, event: CaseEvent, **changes: Any) -> tuple[Case, CaseEvent]:
    if len(case.history) >= MAX_EVENTS:
        raise InvalidRecordError("history", f"the case holds {MAX_EVENTS} events, the most it keeps")
    return replace(case, history=(*case.history, event), version=case.version + 1, **changes), event


def assigned(case: Case, assignee: str, *, by: str, at: str) -> tuple[Case, CaseEvent] | None:
    """The case given to `assignee` (None: already theirs); a closed case is not assigned."""
    if problem := analyst_problem(assignee):
        raise InvalidRecordError("assignee", problem)
    if case.status is CaseStatus.CLOSED:
        raise InvalidRecordError("status", "the case is closed: it is not assigned any more")
    if case.assignee == assignee:
        return None
    return _with(case, CaseEvent(at, by, "assigned", assignee), assignee=assignee)


def commented(case: Case, text: str, *, by: str, at: str) -> tuple[Case, CaseEvent]:
    """The case with a comment added to its history (open or closed)."""
    if problem := _text_problem(text, "the comment"):
        raise InvalidRecordError("comment", problem)
    return _with(case, CaseEvent(at, by, "commented", text))


def closed(case: Case, verdict: Verdict, reason: str, *, by: str, at: str) -> tuple[Case, CaseEvent] | None:
    """The case closed with a verdict; None when it is closed with this verdict already.

    Closing a closed case with the other verdict changes its verdict, and the history says so, with who
    and when; the verdict before stays in the history.
    """
    if problem := _text_problem(reason, "the reason"):
        raise InvalidRecordError("reason", problem)
    if case.status is CaseStatus.CLOSED and case.verdict is verdict:
        return None
    if case.status is CaseStatus.CLOSED and case.verdict is not None:
        action, detail = "verdict changed", f"{case.verdict.value} -> {verdict.value}: {reason}"
    else:
        action, detail = "closed", f"{verdict.value}: {reason}"
    return _with(
        case,
        CaseEvent(at, by, action, detail),
        status=CaseStatus.CLOSED,
        verdict=verdict,
        verdict_reason=reason,
        closed_at=at,
        closed_by=by,
    )


BLOCKED = "blocked"
BLOCK_LIFTED = "block lifted"
"""The history's actions of a case that put its user on the block list, and of one that took them off."""


class BlockChange(StrEnum):
    """What a close did to the user's entry on the block list."""

    ADDED = "added"
    """Put there by this close (`block`)."""
    LIFTED = "lifted"
    """Taken off: the verdict is now genuine, and the entry was the one this case put there."""
    KEPT = "kept"
    """Left there: the verdict is now genuine, but the entry is someone else's."""


def _block_detail(entry: ListEntry) -> str:
    """How the history names a block-list entry; equal details, equal who: the same entry."""
    return f"{entry.list_name} {entry.value}: {entry.reason}"


def blocked(case: Case, entry: ListEntry, *, at: str) -> Case:
    """The case recording that it put its user on the block list (unchanged when it says so already)."""
    event = CaseEvent(at, entry.added_by, BLOCKED, _block_detail(entry))
    last = _last_block_event(case)
    if last is not None and (last.action, last.by, last.detail) == (event.action, event.by, event.detail):
        return case
    return _with(case, event)[0]


def block_lifted(case: Case, entry: ListEntry, *, by: str, at: str) -> Case:
    """The case recording that its block-list entry was taken off (unchanged when it says so already)."""
    last = _last_block_event(case)
    if last is not None and last.action == BLOCK_LIFTED:
        return case
    return _with(case, CaseEvent(at, by, BLOCK_LIFTED, _block_detail(entry)))[0]


def put_by_case(case: Case, entry: ListEntry) -> bool:
    """Whether a block-list entry is still the one this case last put there: same who, same why."""
    put = next((e for e in reversed(case.history) if e.action == BLOCKED), None)
    return put is not None and (put.by, put.detail) == (entry.added_by, _block_detail(entry))


def _last_block_event(case: Case) -> CaseEvent | None:
    return next((e for e in reversed(case.history) if e.action in (BLOCKED, BLOCK_LIFTED)), None)


def verdict_of(raw: str) -> Verdict:
    """A verdict from its name, or InvalidRecordError naming the field `verdict`."""
    try:
        return Verdict(raw.strip().lower())
    except ValueError:
        raise InvalidRecordError(
            "verdict", f"{raw!r} is not one of {', '.join(v.value for v in Verdict)}"
        ) from None


# ---------------------------------------------------------------------------------------------- ports


def reason_problem(reason: str) -> str | None:
    """Why `reason` cannot filter the queue, or None: it must name a feature (a typo is no empty queue)."""
    if reason in FEATURE_NAMES:
        return None
    return f"no feature is named {reason!r}: they are {', '.join(FEATURE_NAMES)}"


def rule_problem(rule: str) -> str | None:
    """Why `rule` cannot filter the queue, or None: it must be a code as decisions record them (a bare
    rule id is no empty queue)."""
    if rule.startswith(("rule:", "list:")) and rule not in ("rule:", "list:"):
        return None
    return (
        f"{rule!r}: give a rule as rule:<id> or a list as list:<name>, as decisions record them "
        "(e.g. rule:night-spend, list:review_categories)"
    )


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """What `list` narrows the queue to: a reason's feature, a rule or list code, a merchant, an
    analyst's cases, a user's. A reason that is no feature, or a rule that is no code, is refused
    (InvalidRecordError naming `reason` or `rule`): the command line and the API check it here."""

    reason: str | None = None
    rule: str | None = None
    merchant: str | None = None
    status: CaseStatus = CaseStatus.OPEN
    assignee: str | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        if self.reason is not None and (problem := reason_problem(self.reason)):
            raise InvalidRecordError("reason", problem)
        if self.rule is not None and (problem := rule_problem(self.rule)):
            raise InvalidRecordError("rule", problem)

    def matches(self, case: Case) -> bool:
        """Whether a case passes the filter (what the store's query does, for the fakes)."""
        return (
            case.status is self.status
            and (self.reason is None or self.reason in case.reason_features)
            and (self.rule is None or self.rule in case.decision.rule_reasons)
            and (self.merchant is None or self.merchant == case.decision.merchant_id)
            and (self.assignee is None or self.assignee == case.assignee)
            and (self.user is None or self.user == case.decision.user_id)
        )


class CasePage(NamedTuple):
    """Cases oldest first, and the cursor of the next page (None: the last)."""

    cases: list[Case]
    next: str | None


class CaseStore(Protocol):
    """Cases by id, the queue by status and age."""

    def open(self, case: Case) -> bool:
        """Store a new case unless one with its id exists; whether it was stored."""
        ...

    def get(self, case_id: str) -> Case | None:
        """A case by id (read consistently), or None."""
        ...

    def save(self, case: Case, read_version: int) -> None:
        """Write a changed case only if the stored one is still at `read_version` (else CaseConflict)."""
        ...

    def queue(self, where: QueueFilter, limit: int, cursor: str | None) -> CasePage:
        """Cases of a status, oldest first (by when they entered it), filtered, a page at a time."""
        ...


class LabelSink(Protocol):
    """Where verdicts go as labels: the stream, under the label contract."""

    def put_label(self, label: Mapping[str, Any]) -> None:
        """Put one label record (partition key: its merchant_id)."""
        ...


class ListWriter(Protocol):
    """The lists store, as far as a verdict needs it."""

    def add(self, entries: list[ListEntry]) -> None:
        """Put entries on their lists."""
        ...

    def entry(self, list_name: str, value: str) -> ListEntry | None:
        """The entry of a value on a list, or None."""
        ...

    def remove_entry(self, entry: ListEntry) -> bool:
        """Delete an entry only if it is still this one (who added it, why); whether it was deleted."""
        ...


# -------------------------------------------------------------------------------------------- service


@dataclass
class CaseOpener:
    """Opens the case an alert asks for, with the user's decisions before it (the cases function)."""

    store: CaseStore
    decisions: DecisionReader
    clock: Callable[[], float] = time.time

    def open(self, decision: DecisionRecord) -> bool:
        """Open the decision's case; False when it is open already (an alert delivered again)."""
        recent = self.decisions.by_user(decision.user_id, None, RECENT_DECISIONS + 1, None).decisions
        opened_at = datetime.fromtimestamp(self.clock(), UTC).isoformat()
        return self.store.open(open_case(decision, recent, opened_at))


@dataclass
class CaseService:
    """Working cases: what the command line and the HTTP API both call."""

    store: CaseStore
    labels: LabelSink
    lists: ListWriter | None = None
    clock: Callable[[], float] = time.time

    def show(self, case_id: str) -> Case:
        """A case by id (CaseNotFound)."""
        case = self.store.get(case_id)
        if case is None:
            raise CaseNotFound(case_id)
        return case

    def queue(self, where: QueueFilter, limit: int = 20, cursor: str | None = None) -> CasePage:
        """A page of the queue, oldest first."""
        return self.store.queue(where, limit, cursor)

    def assign(self, case_id: str, assignee: str, *, by: str) -> Case:
        """Give a case to an analyst (idempotent)."""
        case = self.show(case_id)
        changed = assigned(case, assignee, by=by, at=self._now())
        return case if changed is None else self._save(case, changed[0])

    def comment(self, case_id: str, text: str, *, by: str) -> Case:
        """Add a comment to a case's history."""
        case = self.show(case_id)
        return self._save(case, commented(case, text, by=by, at=self._now())[0])

    def close(self, case_id: str, verdict: Verdict, reason: str, *, by: str, block: bool = False) -> Closing:
        """Close a case with a verdict; put its label on the stream; on fraud, optionally block the user;
        on genuine, lift the block this case put on the user, if it is still there.

        The case is written first (conditionally, its history saying what happens to the block list),
        then the label, then the block-list change: a close that fails after the write is repeated by
        closing again with the same verdict, which changes nothing more in the case, puts the label again
        (the merchant's profile counts it once: its id is the transaction and verdict) and makes the
        block-list change again. An entry this case did not put there (someone else's, or replaced since)
        is never removed: the answer says it stays.
        """
        if block and verdict is not Verdict.FRAUD:
            raise InvalidRecordError("block", "only a fraud verdict blocks the user")
        if block and self.lists is None:
            raise InvalidRecordError("block", "no lists store is configured here")
        read = self.show(case_id)
        at = self._now()
        changed = closed(read, verdict, reason, by=by, at=at)
        case = read if changed is None else changed[0]
        lists, to_add, to_lift, on_list = self.lists, None, None, None
        if block and lists is not None:
            to_add = block_entry(case, by=by, now=self.clock())
            case = blocked(case, to_add, at=at)
        elif verdict is Verdict.GENUINE and lists is not None and _may_hold_block(read):
            on_list = lists.entry(BLOCK_LIST, read.decision.user_id)
            if on_list is not None and put_by_case(read, on_list):
                to_lift = on_list
                case = block_lifted(case, on_list, by=by, at=at)
        if case is not read:
            case = self._save(read, case)
        self.labels.put_label(label_of(case, self._now()))
        if lists is None:
            return Closing(case)
        if to_add is not None:
            lists.add([to_add])
            return Closing(case, BlockChange.ADDED, to_add)
        if to_lift is not None:
            if lists.remove_entry(to_lift):
                return Closing(case, BlockChange.LIFTED, to_lift)
            on_list = lists.entry(BLOCK_LIST, to_lift.value)  # replaced or removed since it was read
        return Closing(case) if on_list is None else Closing(case, BlockChange.KEPT, on_list)

    def _save(self, read: Case, changed: Case) -> Case:
        self.store.save(changed, read.version)
        return changed

    def _now(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).isoformat()


def _may_hold_block(case: Case) -> bool:
    """Whether closing the case as genuine must look at the block list: its verdict was fraud, or it
    once put its user there (a lift to do again after a failure)."""
    return case.verdict is Verdict.FRAUD or any(e.action == BLOCKED for e in case.history)


class Closing(NamedTuple):
    """A close's outcome: the case, and what it did to the user's block-list entry (None: nothing)."""

    case: Case
    block: BlockChange | None = None
    entry: ListEntry | None = None
    """The entry added, lifted, or kept (someone else's)."""

    @property
    def block_note(self) -> str:
        """What happened on the block list, for a person ("" when nothing did)."""
        if self.block is None or self.entry is None:
            return ""
        user = self.entry.value
        if self.block is BlockChange.ADDED:
            return f"{user} is on {BLOCK_LIST}"
        if self.block is BlockChange.LIFTED:
            return f"{user} is off {BLOCK_LIST}: this case's fraud verdict had put them there"
        return (
            f"{user} stays on {BLOCK_LIST}: the entry is not this case's (added by {self.entry.added_by}: "
            f"{self.entry.reason}); lift it with `fraudwatch lists remove {BLOCK_LIST} {user}`"
        )

    def to_dict(self) -> dict[str, Any]:
        """The API's body for a close: the case, and `block` (null, or what happened on the list)."""
        block = None
        if self.block is not None and self.entry is not None:
            block = {
                "list": BLOCK_LIST,
                "user": self.entry.value,
                "outcome": self.block.value,
                "message": self.block_note,
            }
        return {**self.case.to_dict(), "block": block}


def label_of(case: Case, labelled_at: str) -> dict[str, Any]:
    """A closed case's verdict as a label record (domain/label.py's contract)."""
    assert case.verdict is not None, "only a closed case has a label"
    return {
        "event": "label",
        "transaction_id": case.case_id,
        "merchant_id": case.decision.merchant_id,
        "is_fraud": case.verdict is Verdict.FRAUD,
        "labelled_at": labelled_at,
    }


def block_entry(case: Case, *, by: str, now: float) -> ListEntry:
    """The block-list entry a fraud verdict puts the user on."""
    why = f"case {case.case_id}: {case.verdict_reason}"[:MAX_REASON_CHARS]
    return ListEntry(BLOCK_LIST, case.decision.user_id, by, why, now)
