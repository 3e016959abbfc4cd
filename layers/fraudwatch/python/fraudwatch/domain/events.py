"""What a stream record is: a transaction to score, or a label to learn merchant risk from.

The record's optional `event` field tells them apart: absent or `"transaction"` is a transaction,
`"label"` a label; any other value is a malformed record.
"""

from __future__ import annotations

from fraudwatch.domain.label import Label, label_from_mapping
from fraudwatch.domain.transaction import Transaction, decode_payload, transaction_from_mapping
from fraudwatch.errors import InvalidRecordError

EVENT_FIELD = "event"
TRANSACTION_EVENT = "transaction"
LABEL_EVENT = "label"


def parse_event(data: bytes, *, received_at: float | None = None) -> Transaction | Label:
    """Parse one stream record's bytes; raise InvalidRecordError naming the field and the reason.

    Nothing else escapes, whatever the bytes: another exception would fail the whole batch.
    """
    obj = decode_payload(data)
    kind = obj.get(EVENT_FIELD, TRANSACTION_EVENT)
    if kind == TRANSACTION_EVENT:
        return transaction_from_mapping(obj, received_at=received_at)
    if kind == LABEL_EVENT:
        return label_from_mapping(obj, received_at=received_at)
    raise InvalidRecordError(EVENT_FIELD, f"expected {TRANSACTION_EVENT!r} or {LABEL_EVENT!r}")
