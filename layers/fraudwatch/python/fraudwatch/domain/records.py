"""Records as the stream delivers them, and the quarantine entry of a malformed one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class StreamRecord(NamedTuple):
    """One stream record: its raw bytes and where it sits in its shard.

    A NamedTuple rather than a frozen dataclass, as `Transaction` is: as immutable, and less than half
    the cost to build, once for every record of every batch.
    """

    shard_id: str
    sequence_number: str
    data: bytes
    arrival_epoch: float
    partition_key: str | None = None
    """The key the producer put it with, when known: a transaction's must be its user id, a label's its
    merchant id, so that one shard (one writer at a time) holds each profile's updates."""
    from_shard: bool = True
    """False for a transaction that did not come from a shard (the inline API's): no checkpoint counts
    it, only its transaction id among those its profile has applied."""

    @property
    def sequence(self) -> int:
        """The sequence number as an integer (never compare them as strings)."""
        return int(self.sequence_number)


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """A record that can never be processed, with the field at fault and why."""

    record: StreamRecord
    field: str
    reason: str
