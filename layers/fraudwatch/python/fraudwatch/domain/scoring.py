"""Scoring a batch of stream records: the whole of the Lambda's work, behind the domain's ports.

A batch holds transactions, to score, and labels and merchants' daily activity (`domain.activity`),
to count in their merchants' profiles. One read fetches the profiles of the batch's users and
merchants (those not held by the MerchantCache); the batch's merchant records are applied first, then
its transactions scored. A label or a day's activity counts only from the midnight after it, so the
order matters only for a batch that spans midnight, and this order is the one a replay in time order
gives.

Order of writes, and why: decisions, then alerts, then profiles (users', then merchants'). A profile
records which transactions (or labels) it has applied, so it is written last: if anything before it
fails, the user's records are reported as failed, the profile stays as it was, and the retry
recomputes the same features, score and decision (the decision write is an overwrite of the same item;
the alert is sent again with the same id). Once the profile is written, a redelivered record is
recognised and changes nothing. A merchant profile stands alone: if its write fails, its labels are
retried.

A transaction decided inline (`decide_one`: a request that waits on every call) is written in fewer
calls: its alert first, then its decision in the same transaction as its profile (both or neither), so
a request costs a read and a write, and a publish when it alerts. A stream batch keeps its decisions in
BatchWriteItem calls of their own: a transactional write costs DynamoDB twice a plain one, worth it
for a request's one decision, not for a batch's hundred, which no caller waits on.

Two writers, the stream and the inline API, update user profiles (DESIGN.md, decision 6), so a user
profile is written only if its stored version is still the one read. When another writer got there
first, nothing of that profile is written; its user's records are scored again against the profile
re-read (records the other writer applied meanwhile are now duplicates), their decisions and alerts
written again, and the profile written again, CONFLICT_ROUNDS times at most before the records are
left to the stream's retry. The others' records are decided already: a conflict costs only its user's.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fraudwatch.domain.activity import MerchantActivity
from fraudwatch.domain.controls import ControlsSource, Judgement
from fraudwatch.domain.decision import Decision, DecisionRecord, ShadowVerdict, Thresholds
from fraudwatch.domain.drift import DriftRecorder
from fraudwatch.domain.events import MerchantEvent, parse_event
from fraudwatch.domain.features import DAY, apply, apply_activity, apply_label, features
from fraudwatch.domain.label import Label
from fraudwatch.domain.lineup import FixedLineup, Lineup, ModelSource
from fraudwatch.domain.merchant import MerchantCache, MerchantProfile
from fraudwatch.domain.ports import AlertPublisher, DecisionStore, Model, ProfileStore, Quarantine
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.records import QuarantinedRecord, StreamRecord
from fraudwatch.domain.transaction import Transaction
from fraudwatch.errors import (
    AlertPublishError,
    AwsCallError,
    DecisionStoreError,
    InvalidRecordError,
    ProfileStoreError,
    QuarantineError,
    TransactionIdTaken,
)

CONFLICT_ROUNDS = 4
"""Scorings of one user's records in one batch at most, while other writers keep changing its profile."""
VERSION_CONFLICT = "VersionConflict"
"""The code of the error reported when a user's profile kept changing under every round."""


@dataclass(slots=True)
class BatchReport:
    """What one batch did: decisions written, records quarantined or skipped, and what must be retried."""

    decisions: list[DecisionRecord] = field(default_factory=list)
    labels: int = 0
    """Labels counted in their merchants' profiles."""
    activities: int = 0
    """Merchants' days of activity set in their profiles."""
    quarantined: list[QuarantinedRecord] = field(default_factory=list)
    duplicates: int = 0
    known: list[DecisionRecord] = field(default_factory=list)
    """The decisions made before on transactions given again inline (counted in `duplicates` too)."""
    conflicts: int = 0
    """Users whose profile another writer changed between this batch's read and write (scored again)."""
    misrouted: int = 0
    """Valid records put with another partition key than their profile's id (processed all the same: their
    profile may have two writers at once, and an update can be lost)."""
    failed: list[StreamRecord] = field(default_factory=list)
    errors: list[AwsCallError] = field(default_factory=list)
    """The failures behind `failed`: operation, AWS's code, retryable or not (never AWS's message)."""
    latencies_ms: list[float] = field(default_factory=list)
    """Arrival on the stream to decision, per decision written whose arrival is recent (LATENCY_HORIZON_S)."""


LATENCY_HORIZON_S = DAY
"""Older arrivals are no latency: a record waits on its stream a day at most (its retention), so an
older arrival time is a sample event's or a replayed file's, and would only skew DecisionLatency."""


_MODEL_ALONE = {verdict: Judgement(verdict) for verdict in Decision}


class _Pending:
    """A record to decide, its transaction and its feature row (a plain class, as `merchant._Cached` is)."""

    __slots__ = ("record", "row", "tx")

    def __init__(self, record: StreamRecord, tx: Transaction, row: tuple[float, ...]) -> None:
        self.record = record
        self.tx = tx
        self.row = row


class ScoringService:
    """Scores batches of stream records against users' profiles and records the decisions."""

    def __init__(
        self,
        *,
        profiles: ProfileStore,
        decisions: DecisionStore,
        alerts: AlertPublisher,
        quarantine: Quarantine,
        model: Model | None = None,
        thresholds: Thresholds | None = None,
        top_reasons: int = 3,
        clock: Callable[[], float] = time.time,
        merchant_cache: MerchantCache | None = None,
        controls: ControlsSource | None = None,
        models: ModelSource | None = None,
        drift: DriftRecorder | None = None,
    ) -> None:
        """Score with `models` (the lineup read at run time), or else with `model` alone at `thresholds`
        (its own by default)."""
        self._profiles = profiles
        self._merchant_cache = merchant_cache or MerchantCache()
        self._decisions = decisions
        self._alerts = alerts
        self._quarantine = quarantine
        if models is None:
            if model is None:
                raise TypeError("ScoringService needs a model or a source of models")
            models = FixedLineup(Lineup(model, thresholds or model.thresholds))
        self._models = models
        self._lineup = models.current()
        self._top_reasons = top_reasons
        self._clock = clock
        self._controls = controls
        self._drift = drift

    @property
    def models(self) -> ModelSource:
        """Where the lineup comes from (a new service after a SnapStart restore keeps it)."""
        return self._models

    @property
    def model_version(self) -> str:
        """The champion's version, as the last batch scored with it."""
        return self._lineup.champion.version

    @property
    def thresholds(self) -> Thresholds:
        """The champion's thresholds, as the last batch decided with them."""
        return self._lineup.thresholds

    def process(self, records: Sequence[StreamRecord], *, redrive: bool = False) -> BatchReport:
        """Process one batch; records of `report.failed` must be redelivered.

        `redrive` is for records the event-source mapping gave up on, read back from the stream: the
        shard checkpoint has moved past them, so only the profile's recent transaction ids tell
        whether one was already applied.
        """
        report = BatchReport()
        valid, labels = self._parse(records, report)
        self._send_to_quarantine(report)
        if not valid and not labels:
            return report
        try:
            users, merchants, _ = self._read(valid, labels)
        except ProfileStoreError as exc:
            report.errors.append(exc)
            report.failed.extend(record for record, _ in valid)
            report.failed.extend(record for record, _ in labels)
            return report
        learnt = self._learn(labels, merchants, report, redrive)
        self._score(valid, users, merchants, report, redrive)
        self._write_merchants(labels, learnt, merchants, report)
        return report

    def decide_one(self, record: StreamRecord, tx: Transaction) -> BatchReport:
        """Score one transaction already validated (the inline API's), as a record of the stream would be.

        The record is not from a shard: only its transaction id makes it idempotent, and the decision
        already made on it is read with its profile: given again, by the API or on the stream, it is a
        duplicate (in `report.known`), for as long as the decisions table keeps it. The report holds its
        decision, or that one, or lists it as failed (with the errors). Raises TransactionIdTaken when
        the id was decided for another user's payment (the contract's ids are unique: never overwritten).
        """
        report = BatchReport()
        try:
            users, merchants, decided = self._read([(record, tx)], [], (tx.transaction_id,))
        except ProfileStoreError as exc:
            report.errors.append(exc)
            report.failed.append(record)
            return report
        known = decided.get(tx.transaction_id)
        if known is not None:
            if known.user_id != tx.user_id:
                raise TransactionIdTaken(tx.transaction_id)
            report.duplicates += 1
            report.known.append(known)
            return report
        self._score([(record, tx)], users, merchants, report, redrive=True, inline=True)
        return report

    def _score(
        self,
        valid: list[tuple[StreamRecord, Transaction]],
        users: dict[str, UserProfile],
        merchants: dict[str, MerchantProfile],
        report: BatchReport,
        redrive: bool,
        inline: bool = False,
    ) -> None:
        """Score, decide and write, again for the users whose profile another writer changed meanwhile."""
        for attempt in range(CONFLICT_ROUNDS):
            pending, touched, duplicates = self._apply(valid, users, merchants, redrive)
            decided = self._decide(pending)
            failed_users, conflicts = self._write(decided, pending, touched, report, inline)
            report.duplicates += sum(n for user_id, n in duplicates.items() if user_id not in conflicts)
            decided_epoch = self._clock()
            for p, decision in zip(pending, decided, strict=True):
                if p.tx.user_id in conflicts:
                    continue
                if p.tx.user_id in failed_users:
                    report.failed.append(p.record)
                else:
                    report.decisions.append(decision)
                    latency_s = max(decided_epoch - p.record.arrival_epoch, 0.0)
                    if latency_s <= LATENCY_HORIZON_S:
                        report.latencies_ms.append(latency_s * 1000)
            if not conflicts:
                return
            report.conflicts += len(conflicts)
            valid = [(record, tx) for record, tx in valid if tx.user_id in conflicts]
            if attempt == CONFLICT_ROUNDS - 1:
                break
            try:
                users = self._profiles.get_many(conflicts).users
            except ProfileStoreError as exc:
                report.errors.append(exc)
                report.failed.extend(record for record, _ in valid)
                return
        report.errors.append(
            ProfileStoreError(VERSION_CONFLICT, operation="conditional profile write", unwritten=conflicts)
        )
        report.failed.extend(record for record, _ in valid)

    def _parse(
        self, records: Sequence[StreamRecord], report: BatchReport
    ) -> tuple[list[tuple[StreamRecord, Transaction]], list[tuple[StreamRecord, MerchantEvent]]]:
        transactions: list[tuple[StreamRecord, Transaction]] = []
        labels: list[tuple[StreamRecord, MerchantEvent]] = []
        for record in records:
            try:
                event = parse_event(record.data, received_at=record.arrival_epoch)
            except InvalidRecordError as exc:
                report.quarantined.append(QuarantinedRecord(record, exc.field, exc.reason))
                continue
            if isinstance(event, Transaction):
                transactions.append((record, event))
                owner = event.user_id
            else:
                labels.append((record, event))
                owner = event.merchant_id
            if record.partition_key is not None and record.partition_key != owner:
                report.misrouted += 1
        return transactions, labels

    def _read(
        self,
        valid: list[tuple[StreamRecord, Transaction]],
        labels: list[tuple[StreamRecord, MerchantEvent]],
        transaction_ids: Sequence[str] = (),
    ) -> tuple[dict[str, UserProfile], dict[str, MerchantProfile], dict[str, DecisionRecord]]:
        """The batch's user profiles, its merchants' from the cache or the store (labels' always), and the
        decisions already made on `transaction_ids`."""
        days: dict[str, int] = {}
        for _, tx in valid:
            day = int(tx.epoch // DAY)
            if days.get(tx.merchant_id, day) <= day:
                days[tx.merchant_id] = day
        learning = {label.merchant_id for _, label in labels}
        now = self._clock()
        held, missing = self._merchant_cache.lookup(
            {m: day for m, day in days.items() if m not in learning}, now
        )
        users, read, decided = self._profiles.get_many(
            {tx.user_id for _, tx in valid}, missing | learning, transaction_ids
        )
        self._merchant_cache.remember({m: read.get(m) for m in missing}, days, now)
        self._merchant_cache.forget(learning)
        return users, {**held, **read}, decided

    def _send_to_quarantine(self, report: BatchReport) -> None:
        if not report.quarantined:
            return
        try:
            unsent = self._quarantine.put_many(report.quarantined)
        except QuarantineError as exc:
            report.errors.append(exc)
            unsent = set(exc.unwritten or (q.record.sequence_number for q in report.quarantined))
        if unsent:
            report.failed.extend(q.record for q in report.quarantined if q.record.sequence_number in unsent)
            report.quarantined = [q for q in report.quarantined if q.record.sequence_number not in unsent]

    def _apply(
        self,
        valid: list[tuple[StreamRecord, Transaction]],
        profiles: dict[str, UserProfile],
        merchants: dict[str, MerchantProfile],
        redrive: bool,
    ) -> tuple[list[_Pending], dict[str, UserProfile], dict[str, int]]:
        """Per user, in stream order: features against the profile so far, then the profile update.

        Returns the records to decide, the profiles they changed, and the duplicates skipped per user.
        """
        by_user: dict[str, list[tuple[StreamRecord, Transaction]]] = defaultdict(list)
        for record, tx in valid:
            by_user[tx.user_id].append((record, tx))
        pending: list[_Pending] = []
        touched: dict[str, UserProfile] = {}
        duplicates: dict[str, int] = defaultdict(int)
        for user_id, items in by_user.items():
            profile = profiles.get(user_id) or UserProfile(user_id)
            for record, tx in _in_shard_order(items):
                sequence = record.sequence_number
                shard = record.shard_id if record.from_shard else None
                if profile.has_applied(tx.transaction_id, None if redrive else shard, sequence):
                    duplicates[user_id] += 1
                    continue
                pending.append(_Pending(record, tx, features(profile, merchants.get(tx.merchant_id), tx)))
                apply(profile, tx)
                profile.mark_applied(tx.transaction_id, shard, sequence)
                touched[user_id] = profile
        return pending, touched, duplicates

    def _learn(
        self,
        labels: list[tuple[StreamRecord, MerchantEvent]],
        merchants: dict[str, MerchantProfile],
        report: BatchReport,
        redrive: bool,
    ) -> list[tuple[StreamRecord, MerchantEvent]]:
        """In stream order: count each label not counted before, set each day's activity; return them.

        A day's activity sets its counts, so applying it again changes nothing: only the shard
        checkpoint (not the ring of label ids, which it would crowd) tells a redelivery.
        """
        learnt: list[tuple[StreamRecord, MerchantEvent]] = []
        for record, event in _in_shard_order(labels):
            sequence = record.sequence_number
            merchant = merchants.get(event.merchant_id)
            if merchant is None:
                merchant = merchants[event.merchant_id] = MerchantProfile(event.merchant_id)
            checkpointed_shard = None if redrive else record.shard_id
            if isinstance(event, MerchantActivity):
                if merchant.is_checkpointed(checkpointed_shard, sequence):
                    report.duplicates += 1
                    continue
                apply_activity(merchant, event.day, (event.payments, event.cards, event.new_cards))
                merchant.checkpoint(record.shard_id, sequence)
            else:
                if merchant.has_applied(event.applied_id, checkpointed_shard, sequence):
                    report.duplicates += 1
                    continue
                apply_label(merchant, event)
                merchant.mark_applied(event.applied_id, record.shard_id, sequence)
            learnt.append((record, event))
        return learnt

    def _write_merchants(
        self,
        events: list[tuple[StreamRecord, MerchantEvent]],
        learnt: list[tuple[StreamRecord, MerchantEvent]],
        merchants: dict[str, MerchantProfile],
        report: BatchReport,
    ) -> None:
        """Write the merchant profiles the records changed and keep every label of the batch (those counted
        before too: one may be the retry of a label whose profile was written and whose label was not; the
        same label writes the same item). A merchant's records are retried when its profile or any of its
        labels is left unwritten."""
        touched = [
            merchants[merchant_id] for merchant_id in dict.fromkeys(event.merchant_id for _, event in learnt)
        ]
        labels = [label for _, label in events if isinstance(label, Label)]
        unwritten: set[str] = set()
        if touched or labels:
            try:
                unwritten = self._profiles.put_merchants(touched, labels)
            except ProfileStoreError as exc:
                report.errors.append(exc)
                unwritten = set(exc.unwritten or {event.merchant_id for _, event in events})
        counted = {id(record) for record, _ in learnt}
        for record, event in events:
            if event.merchant_id in unwritten:
                report.failed.append(record)
            elif id(record) in counted:
                if isinstance(event, Label):
                    report.labels += 1
                else:
                    report.activities += 1

    def _decide(self, pending: list[_Pending]) -> list[DecisionRecord]:
        if not pending:
            return []
        lineup = self._lineup = self._models.current()
        champion = lineup.champion
        rows = [p.row for p in pending]
        scores = champion.score(rows)
        judged, rules_version = self._judge(pending, scores, lineup.thresholds)
        verdicts = [j.decision for j in judged]
        alerting = [i for i, verdict in enumerate(verdicts) if verdict is not Decision.APPROVED]
        reasons = dict(
            zip(alerting, champion.explain([rows[i] for i in alerting], self._top_reasons), strict=True)
        )
        shadows = _shadow(lineup, rows)
        if self._drift is not None and lineup.reference is not None:
            self._drift.observe(champion.version, lineup.reference, rows, scores)
        decided_at = datetime.fromtimestamp(self._clock(), UTC).isoformat()
        return [
            DecisionRecord.for_transaction(
                p.tx,
                decision=verdicts[i],
                score=float(scores[i]),
                model_version=champion.version,
                thresholds=lineup.thresholds,
                decided_at=decided_at,
                reasons=reasons.get(i, ()),
                rule_reasons=judged[i].matched,
                rules_version=rules_version,
                challenger=shadows[i],
            )
            for i, p in enumerate(pending)
        ]

    def _judge(
        self, pending: list[_Pending], scores: Sequence[float], thresholds: Thresholds
    ) -> tuple[list[Judgement], str]:
        """The model's verdicts, then what rules and lists say (domain/controls.py); the rules' version."""
        verdicts = [thresholds.decide(score) for score in scores]
        if self._controls is None:
            return [_MODEL_ALONE[verdict] for verdict in verdicts], ""
        controls = self._controls.current()
        judged = controls.judge_many([p.tx for p in pending], [p.row for p in pending], scores, verdicts)
        return judged, controls.version

    def _write(
        self,
        decided: list[DecisionRecord],
        pending: list[_Pending],
        touched: dict[str, UserProfile],
        report: BatchReport,
        inline: bool,
    ) -> tuple[set[str], set[str]]:
        """Write decisions, alerts, then profiles (inline: alerts, then decisions with their profiles);
        return the users whose records must be retried, and the users whose profile another writer
        changed since it was read (nothing of theirs written)."""
        user_of = {p.tx.transaction_id: p.tx.user_id for p in pending}
        unwritten = (
            set() if inline else _attempt(self._decisions.put_many, decided, DecisionStoreError, report)
        )
        alerts = [d for d in decided if d.is_alert and d.transaction_id not in unwritten]
        unwritten |= _attempt(self._alerts.publish_many, alerts, AlertPublishError, report)
        failed_users = {user_of[tx_id] for tx_id in unwritten}
        ready = [profile for user_id, profile in touched.items() if user_id not in failed_users]
        together = [d for d in decided if d.user_id not in failed_users] if inline else []
        try:
            conflicts = self._profiles.put_many(ready, together) if ready else set()
        except ProfileStoreError as exc:
            report.errors.append(exc)
            failed_users |= set(exc.unwritten or (p.user_id for p in ready))
            conflicts = set()
        return failed_users, conflicts


def _in_shard_order[E](items: list[tuple[StreamRecord, E]]) -> list[tuple[StreamRecord, E]]:
    """The records by shard, then sequence number (by length, then text: `records.at_or_before`)."""
    return sorted(items, key=_shard_order)


def _shard_order[E](item: tuple[StreamRecord, E]) -> tuple[str, int, str]:
    record = item[0]
    return record.shard_id, len(record.sequence_number), record.sequence_number


def _shadow(lineup: Lineup, rows: list[tuple[float, ...]]) -> Sequence[ShadowVerdict | None]:
    """The challenger's verdict on each row, from one predict call (none without a challenger)."""
    challenger, thresholds = lineup.challenger, lineup.challenger_thresholds
    if challenger is None or thresholds is None:
        return [None] * len(rows)
    version = challenger.version
    return [
        ShadowVerdict(version, score, thresholds.decide(score))
        for score in map(float, challenger.score(rows))
    ]


def _attempt[T](
    write: Callable[[Sequence[T]], set[str]],
    items: Sequence[T],
    error: type[AwsCallError],
    report: BatchReport,
) -> set[str]:
    """Run one batch write; return the keys left unwritten: those the error names, or every item's."""
    if not items:
        return set()
    try:
        return write(items)
    except error as exc:
        report.errors.append(exc)
        return set(exc.unwritten or (_key(item) for item in items))


def _key(item: object) -> str:
    if isinstance(item, UserProfile):
        return item.user_id
    if isinstance(item, MerchantProfile):
        return item.merchant_id
    if isinstance(item, DecisionRecord):
        return item.transaction_id
    raise TypeError(f"no key for {type(item).__name__}")
