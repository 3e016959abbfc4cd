"""What a stream record is: a transaction to score, or a label or a day's activity to learn merchant
risk from.

The record's optional `event` field tells them apart: absent or `"transaction"` is a transaction,
`"label"` a label, `"activity"` a merchant's payments of a day (`domain.activity`); any other value
is a malformed record.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fraudwatch.domain.activity import MerchantActivity, activity_from_mapping
from fraudwatch.domain.label import Label, label_from_mapping
from fraudwatch.domain.transaction import Transaction, decode_payload, transaction_from_mapping
from fraudwatch.errors import InvalidRecordError

EVENT_FIELD = "event"
TRANSACTION_EVENT = "transaction"
LABEL_EVENT = "label"
ACTIVITY_EVENT = "activity"
MerchantEvent = Label | MerchantActivity
"""What a merchant's profile learns from: records keyed by the merchant."""


def parse_event(data: bytes, *, received_at: float | None = None) -> Transaction | MerchantEvent:
    """Parse one stream record's bytes; raise InvalidRecordError naming the field and the reason.

    Nothing else escapes, whatever the bytes: another exception would fail the whole batch.
    """
    obj = decode_payload(data)
    kind = obj.get(EVENT_FIELD, TRANSACTION_EVENT)
    if kind == TRANSACTION_EVENT:
        return transaction_from_mapping(obj, received_at=received_at)
    if kind == LABEL_EVENT:
        return label_from_mapping(obj, received_at=received_at)
    if kind == ACTIVITY_EVENT:
        return activity_from_mapping(obj, received_at=received_at)
    raise InvalidRecordError(
        EVENT_FIELD, f"expected {TRANSACTION_EVENT!r}, {LABEL_EVENT!r} or {ACTIVITY_EVENT!r}"
    )


def activity_records(activities: Iterable[MerchantActivity]) -> list[dict[str, Any]]:
    """The stream records of merchants' days of activity, each put with its merchant id as partition key
    (the daily count's: `fraudwatch activity`, ModelOpsFunction's activity job)."""
    return [{EVENT_FIELD: ACTIVITY_EVENT, **activity.to_mapping()} for activity in activities]
