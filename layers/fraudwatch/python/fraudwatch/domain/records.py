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


def at_or_before(sequence_number: str, other: str) -> bool:
    """`int(sequence_number) <= int(other)` for two sequence numbers of a shard, read as written.

    Kinesis writes them in decimal without leading zeros (56 digits today, up to 128), so the shorter is
    the smaller, and of two as long the first in text order: no 56-digit integer to read for each record
    and each checkpoint a profile holds (a fifth of a µs each), nor to write back with the profile.
    """
    if len(sequence_number) != len(other):
        return len(sequence_number) < len(other)
    return sequence_number <= other


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """A record that can never be processed, with the field at fault and why."""

    record: StreamRecord
    field: str
    reason: str
