"""A merchant's risk profile: the fraud labels that came back for its transactions, day by day.

Labels (a chargeback, or a transaction confirmed genuine) arrive days after the payment. A merchant
profile counts them by the UTC day they became known, at most KEPT_DAYS + 1 days of them (past that,
those more than KEPT_DAYS days before the newest are dropped); the merchant features read whole
days only, so a label counts from the midnight after it became known.

Writers: labels are put on the stream with the merchant id as partition key, so one shard (one
function instance at a time) writes a merchant's profile, exactly as one shard writes a user's;
transactions only read it. Redelivered labels are recognised by the same per-shard checkpoints and
ring of recent ids (here, the labelled transactions' ids) that user profiles keep.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fraudwatch.domain.profile import KEPT_DAYS, MAX_APPLIED_IDS, Ledger, words

__all__ = ["KEPT_DAYS", "MerchantProfile"]


@dataclass(slots=True)
class MerchantProfile(Ledger):
    """The state kept per merchant."""

    merchant_id: str
    days: dict[int, list[int]] = field(default_factory=dict)
    """UTC day number a label became known → [labels, of which fraud]."""
    applied_ids: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_APPLIED_IDS))
    checkpoints: dict[str, int] = field(default_factory=dict)
    windows: tuple[int, tuple[float, ...]] | None = field(default=None, compare=False, repr=False)
    """The features of one day, cached (never stored): they change only at midnight."""

    def to_json(self) -> str:
        """The compact JSON the profile store keeps."""
        return json.dumps(
            {
                "d": [[day, *counts] for day, counts in self.days.items()],
                "ids": " ".join(self.applied_ids),
                "cp": self.checkpoints,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, merchant_id: str, text: str) -> MerchantProfile:
        """Rebuild a profile from `to_json`'s output."""
        state: dict[str, Any] = json.loads(text)
        return cls(
            merchant_id=merchant_id,
            days={day: [labels, frauds] for day, labels, frauds in state["d"]},
            applied_ids=deque(words(state["ids"]), maxlen=MAX_APPLIED_IDS),
            checkpoints=state["cp"],
        )
