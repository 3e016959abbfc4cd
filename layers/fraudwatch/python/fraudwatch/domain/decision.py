"""Decisions: thresholds on the model's score, and the record written and alerted."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from fraudwatch.domain.transaction import Transaction


class Decision(StrEnum):
    """What happens to a transaction."""

    APPROVED = "APPROVED"
    FLAGGED = "FLAGGED"
    REJECTED = "REJECTED"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Scores at or above `reject` are REJECTED; at or above `flag`, FLAGGED."""

    flag: float
    reject: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.flag <= self.reject <= 1.0:
            raise ValueError(
                f"thresholds must satisfy 0 <= flag <= reject <= 1, got {self.flag}, {self.reject}"
            )

    def decide(self, score: float) -> Decision:
        """The decision for one score."""
        if score >= self.reject:
            return Decision.REJECTED
        if score >= self.flag:
            return Decision.FLAGGED
        return Decision.APPROVED


class Reason(NamedTuple):
    """One feature's contribution (in log-odds) to a score; `value` is None where it was missing."""

    feature: str
    value: float | None
    contribution: float


class ShadowVerdict(NamedTuple):
    """A challenger's view of a transaction: stored beside the decision, never acted on, never alerted."""

    model_version: str
    score: float
    decision: Decision
    """Its own thresholds' verdict, before rules and lists."""


class DecisionRecord(NamedTuple):
    """The decision contract: what is written to the decisions table and sent as an alert.

    A NamedTuple, like Transaction: immutable, and built a hundred times a batch on the hot path.
    """

    transaction_id: str
    user_id: str
    merchant_id: str
    amount: float
    currency: str
    transaction_time: str
    decision: Decision
    score: float
    model_version: str
    thresholds: Thresholds
    decided_at: str
    reasons: tuple[Reason, ...] = ()
    rule_reasons: tuple[str, ...] = ()
    """The rules and lists that matched (`rule:<id>`, `list:<name>`), the one that decided first."""
    rules_version: str = ""
    """The rules document in force ("" where no rules were consulted: backtests of the model alone)."""
    challenger: ShadowVerdict | None = None
    """The challenger's score and would-be decision, when one was in the lineup (domain/lineup.py)."""

    @classmethod
    def for_transaction(
        cls,
        tx: Transaction,
        *,
        decision: Decision,
        score: float,
        model_version: str,
        thresholds: Thresholds,
        decided_at: str,
        reasons: tuple[Reason, ...] = (),
        rule_reasons: tuple[str, ...] = (),
        rules_version: str = "",
        challenger: ShadowVerdict | None = None,
    ) -> DecisionRecord:
        """The decision on one transaction, its ids and amount taken from the transaction."""
        # tuple.__new__, not cls(...): a NamedTuple's constructor is a generated Python function, a frame
        # a decision even where this module is compiled (layers/fraudwatch/compile.py).
        fields = (
            tx.transaction_id,
            tx.user_id,
            tx.merchant_id,
            tx.amount,
            tx.currency,
            tx.timestamp,
            decision,
            score,
            model_version,
            thresholds,
            decided_at,
            reasons,
            rule_reasons,
            rules_version,
            challenger,
        )
        return tuple.__new__(cls, fields)

    @property
    def is_alert(self) -> bool:
        """FLAGGED and REJECTED decisions raise an alert."""
        return self.decision is not Decision.APPROVED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the alert body and the API's answer. The challenger's verdict is left out:
        it is the fraud team's to compare (`fraudwatch models compare`), never the payer's to act on."""
        fields = self._asdict()
        del fields["challenger"]
        return {
            **fields,
            "decision": self.decision.value,
            "thresholds": asdict(self.thresholds),
            "reasons": [reason._asdict() for reason in self.reasons],
            "rule_reasons": list(self.rule_reasons),
        }
