"""A user's behavioural profile: everything the features need, bounded in size.

Bounds, and what happens at them:

* `recent` keeps (time, amount) of the user's transactions of the last 24 h before the newest one,
  at most MAX_RECENT of them; beyond that the oldest are dropped, so `velocity_24h` and `spend_24h`
  saturate at the most recent MAX_RECENT transactions (a user doing more than that in a day is
  flagged long before).
* `days` keeps the count and the total amount of each UTC day's transactions, at most KEPT_DAYS + 1
  days of them; past that, those more than KEPT_DAYS days before the newest are dropped. The 7- and
  30-day windows are made of these.
* `categories` and `merchants` remember the MAX_CATEGORIES / MAX_MERCHANTS most recently used; one
  not used for longer than that counts as new again.
* `checkpoints` keeps the highest Kinesis sequence number applied per shard, which makes any redelivery
  of a record a no-op however old; `applied_ids` remembers the user's last MAX_APPLIED_IDS transaction
  ids, which catches the same transaction put twice under new sequence numbers (a producer's retry).

At these bounds a profile serialises to about 28 KB of JSON with ids like the generator's (10,000
transactions in a day at 500 merchants), a fourteenth of DynamoDB's 400 KB item limit; the worst case,
with the longest ids, is measured in docs/reliability.md.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_RECENT = 1000
MAX_CATEGORIES = 32
MAX_MERCHANTS = 200
MAX_APPLIED_IDS = 64
KEPT_DAYS = 30
"""Day buckets kept before the newest day: enough for a 30-day window of complete days."""


class Ledger:
    """What makes applying a record idempotent: per-shard checkpoints and a ring of recent ids.

    Mixed into a profile dataclass that has `applied_ids` (a bounded deque) and `checkpoints`.
    """

    __slots__ = ()
    applied_ids: deque[str]
    checkpoints: dict[str, int]

    def has_applied(self, record_id: str, shard_id: str | None, sequence_number: int | None) -> bool:
        """True when this record (or the same id, delivered twice) is already in the profile."""
        if shard_id is not None and sequence_number is not None:
            checkpoint = self.checkpoints.get(shard_id)
            if checkpoint is not None and sequence_number <= checkpoint:
                return True
        return record_id in self.applied_ids

    def mark_applied(self, record_id: str, shard_id: str | None, sequence_number: int | None) -> None:
        """Remember a record so that its redelivery changes nothing."""
        self.applied_ids.append(record_id)
        if shard_id is not None and sequence_number is not None:
            self.checkpoints[shard_id] = max(sequence_number, self.checkpoints.get(shard_id, sequence_number))


@dataclass(slots=True)
class UserProfile(Ledger):
    """The state kept per user; `mean`/`m2` are Welford's running moments of the amount."""

    user_id: str
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    last_epoch: float | None = None
    recent_epochs: list[float] = field(default_factory=list)
    recent_amounts: list[float] = field(default_factory=list)
    categories: dict[str, None] = field(default_factory=dict)
    merchants: dict[str, None] = field(default_factory=dict)
    days: dict[int, list[float]] = field(default_factory=dict)
    """UTC day number → [transactions, total amount]."""
    applied_ids: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_APPLIED_IDS))
    checkpoints: dict[str, int] = field(default_factory=dict)
    windows: tuple[int, tuple[float, ...]] | None = field(default=None, compare=False, repr=False)
    """The long windows' features of one day, cached (never stored): they change only at midnight."""
    version: int = field(default=0, compare=False)
    """The stored item's version when read (0: none stored yet); a write is conditional on it, since the
    stream and the inline API both write user profiles (DESIGN.md, decision 6). Kept beside the state,
    not in it: two profiles are equal by content whatever writes led to them."""

    def to_json(self) -> str:
        """The compact JSON the profile store keeps.

        Key sets are stored as one space-joined string each (ids and names never contain a space):
        encoding and decoding one string is an order of magnitude cheaper than a list of a hundred.
        orjson rather than json: a fourth of the CPU to encode these profiles, a third to parse them.
        """
        return orjson.dumps(
            {
                "n": self.count,
                "mean": self.mean,
                "m2": self.m2,
                "last": self.last_epoch,
                "te": self.recent_epochs,
                "ta": self.recent_amounts,
                "cat": " ".join(self.categories),
                "mer": " ".join(self.merchants),
                "d": [[day, *totals] for day, totals in self.days.items()],
                "ids": " ".join(self.applied_ids),
                "cp": checkpoints_to_json(self.checkpoints),
            }
        ).decode()

    @classmethod
    def from_json(cls, user_id: str, text: str) -> UserProfile:
        """Rebuild a profile from `to_json`'s output."""
        state = load_state(text)
        return cls(
            user_id=user_id,
            count=state["n"],
            mean=state["mean"],
            m2=state["m2"],
            last_epoch=state["last"],
            recent_epochs=state["te"],
            recent_amounts=state["ta"],
            categories=dict.fromkeys(words(state["cat"])),
            merchants=dict.fromkeys(words(state["mer"])),
            days={day: [count, total] for day, count, total in state["d"]},
            applied_ids=deque(words(state["ids"]), maxlen=MAX_APPLIED_IDS),
            checkpoints=state["cp"],
        )


def checkpoints_to_json(checkpoints: dict[str, int]) -> dict[str, str]:
    """Sequence numbers as decimal strings: Kinesis's have 56 digits, and orjson encodes 64-bit ints only."""
    return {shard_id: str(sequence_number) for shard_id, sequence_number in checkpoints.items()}


def load_state(text: str) -> dict[str, Any]:
    """A stored profile's JSON (user or merchant), its checkpoints back as ints.

    Profiles written before checkpoints became strings hold them as JSON integers, which orjson reads
    as floats beyond 64 bits, digits lost: such a profile is read again, exactly, by the standard
    library, until its next write stores it in the current format.
    """
    state: dict[str, Any] = orjson.loads(text)
    checkpoints: dict[str, str | int | float] = state["cp"]
    if any(isinstance(sequence_number, float) for sequence_number in checkpoints.values()):
        checkpoints = json.loads(text)["cp"]
    state["cp"] = {shard_id: int(sequence_number) for shard_id, sequence_number in checkpoints.items()}
    return state


def words(joined: str) -> list[str]:
    """The words of a space-joined key set."""
    return joined.split(" ") if joined else []
