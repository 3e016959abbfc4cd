"""The label contract: a transaction confirmed fraudulent or genuine, and when that became known.

A label is a stream record like a transaction, told apart by `"event": "label"`:

    {"event": "label", "transaction_id": "tx-1", "merchant_id": "merch-7",
     "is_fraud": true, "labelled_at": "2026-09-08T10:00:00+00:00"}

It is validated by the same rules (ids, timestamps with an offset, at most an hour ahead of its
arrival and at most seven days behind it) and quarantined the same way when it breaks them.
"""

from __future__ import annotations

from typing import NamedTuple

from fraudwatch.domain.transaction import identifier, instant
from fraudwatch.errors import InvalidRecordError

LABEL_FIELDS = ("transaction_id", "merchant_id", "is_fraud", "labelled_at")
DEFAULT_LABEL_DELAY = 7 * 86400.0
"""Seconds from a transaction to its label, where history is replayed: a typical chargeback delay."""


class Label(NamedTuple):
    """One label, validated; `epoch` is when it became known."""

    transaction_id: str
    merchant_id: str
    is_fraud: bool
    labelled_at: str
    epoch: float

    @property
    def applied_id(self) -> str:
        """What its merchant's profile remembers it by: the transaction and the verdict.

        The same label delivered or put again is recognised; a changed verdict (a payment confirmed
        genuine, later charged back, or a chargeback reversed) is a label of its own and counts too.
        """
        return f"{self.transaction_id}:{'fraud' if self.is_fraud else 'genuine'}"


def label_from_mapping(obj: dict[str, object], *, received_at: float | None = None) -> Label:
    """Validate a decoded label record; extra keys are allowed and ignored."""
    missing = [name for name in LABEL_FIELDS if name not in obj]
    if missing:
        raise InvalidRecordError(missing[0], "missing")
    labelled_at, _, epoch = instant(obj, "labelled_at", received_at)
    is_fraud = obj["is_fraud"]
    if not isinstance(is_fraud, bool):
        raise InvalidRecordError("is_fraud", f"expected true or false, got {type(is_fraud).__name__}")
    return Label(
        transaction_id=identifier(obj, "transaction_id"),
        merchant_id=identifier(obj, "merchant_id"),
        is_fraud=is_fraud,
        labelled_at=labelled_at,
        epoch=epoch,
    )
