"""Deciding one transaction inline (the HTTP API), on the stream's own scoring core.

A request is validated as a stream record is (`decode_payload`, `transaction_from_mapping`: the same
contract, the same field and reason), then scored by `ScoringService.decide_one`: the same profile
read, features, model and alert as a batch of one, and its decision written in the same transaction as
its user's conditional profile write (two calls a request, three when it alerts). The decision already
made on the transaction id is read with the profile: asked again, by the API or on the stream, its
answer is that decision, counted once; an id decided for another user's payment is refused
(TransactionIdTaken: 409), and that decision kept.

A request that failed after its alert was published but before its decision and profile were written
(answered 503) is scored afresh when asked again, to the same decision, counted once, and its alert
(the same alert id) is dropped by the topic's deduplication. A profile remembers its user's last 64
transaction ids (domain/profile.py), the stream's window too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fraudwatch.domain.decision import DecisionRecord
from fraudwatch.domain.events import EVENT_FIELD, TRANSACTION_EVENT
from fraudwatch.domain.ports import DecisionPage, DecisionReader
from fraudwatch.domain.records import StreamRecord
from fraudwatch.domain.scoring import BatchReport, ScoringService
from fraudwatch.domain.transaction import Transaction, decode_payload, transaction_from_mapping
from fraudwatch.errors import AwsCallError, InvalidRecordError

INLINE_SOURCE = "api"
"""The shard id given to an inline transaction's record: it names where it came from, no shard."""


class ScoringUnavailable(Exception):
    """The stores failed, after their retries: the profile is unchanged; ask again later."""

    def __init__(self, errors: list[AwsCallError]) -> None:
        super().__init__("; ".join(str(error) for error in errors) or "the decision is not readable yet")
        self.errors = errors

    @property
    def retryable(self) -> bool:
        """Whether asking again can help (throttling, a 5xx, a timeout, a race still settling)."""
        return all(error.retryable for error in self.errors)


@dataclass(frozen=True, slots=True)
class InlineDecision:
    """The decision on a posted transaction, whether made now, and what the scoring reported."""

    decision: DecisionRecord
    new: bool
    report: BatchReport = field(default_factory=BatchReport)


class InlineScoring:
    """Decides posted transactions and reads decisions back."""

    def __init__(
        self, service: ScoringService, decisions: DecisionReader, clock: Callable[[], float] = time.time
    ) -> None:
        self.service = service
        self.decisions = decisions
        self._clock = clock

    def decide(self, body: bytes) -> InlineDecision:
        """The decision on this transaction, made now or earlier.

        Raises InvalidRecordError (the field and the reason) for a body the stream would quarantine,
        ScoringUnavailable when the stores fail.
        """
        received_at = self._clock()
        tx = _transaction(body, received_at)
        record = StreamRecord(INLINE_SOURCE, "0", body, received_at, tx.user_id, from_shard=False)
        report = self.service.decide_one(record, tx)
        if report.decisions:
            return InlineDecision(report.decisions[0], new=True, report=report)
        if report.known:  # decided before, by this API or the stream: the decision then made is the answer
            return InlineDecision(report.known[0], new=False, report=report)
        if report.failed:
            raise ScoringUnavailable(report.errors)
        # Applied before, between the read and the write (another request, or the stream): read it.
        applied = self._read(tx.transaction_id)
        if applied is None:
            raise ScoringUnavailable([])
        return InlineDecision(applied, new=False, report=report)

    def decision(self, transaction_id: str) -> DecisionRecord | None:
        """The decision on a transaction, or None (ScoringUnavailable when the store fails)."""
        return self._read(transaction_id)

    def user_decisions(self, user_id: str, since: str | None, limit: int, after: str | None) -> DecisionPage:
        """A user's decisions, newest first (ScoringUnavailable when the store fails)."""
        try:
            return self.decisions.by_user(user_id, since, limit, after)
        except AwsCallError as exc:
            raise ScoringUnavailable([exc]) from exc

    def _read(self, transaction_id: str) -> DecisionRecord | None:
        try:
            return self.decisions.get(transaction_id)
        except AwsCallError as exc:
            raise ScoringUnavailable([exc]) from exc


def _transaction(body: bytes, received_at: float) -> Transaction:
    """The posted body read as the stream reads a transaction; a label is refused (it goes on the stream)."""
    obj = decode_payload(body)
    if obj.get(EVENT_FIELD, TRANSACTION_EVENT) != TRANSACTION_EVENT:
        raise InvalidRecordError(EVENT_FIELD, f"expected {TRANSACTION_EVENT!r}: labels are put on the stream")
    return transaction_from_mapping(obj, received_at=received_at)
