"""Profiles as production would hold them after a labelled history, the history moved to end before a
given instant: the users' (every transaction folded in) and the merchants' (the labels known by then,
and their payments day by day).
The demo seeds its stack with them (`infra.seeding`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from fraudwatch.domain.features import apply_activity
from fraudwatch.domain.label import DEFAULT_LABEL_DELAY, Label
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.transaction import Transaction
from training.features import Replay, labels_of, merchant_activity, replay_profiles, to_transactions
from training.io import LABEL, id_texts


class HistoryProfiles(NamedTuple):
    """The profiles of a history's users and merchants, by id."""

    users: dict[str, UserProfile]
    merchants: dict[str, MerchantProfile]


def profiles_before(frame: pd.DataFrame, before: float) -> HistoryProfiles:
    """The profiles of a labelled history moved by whole days (local hours kept, UTC days kept whole)
    to end before `before` (epoch seconds), folded through the domain's profile update.

    Its merchants get the labels known by the history's end, each DEFAULT_LABEL_DELAY after its
    transaction as in training, moved by the same days; a label due later is not known yet. They get
    their payments counted per day too (the daily count's records, `domain.activity`), moved likewise.
    """
    history = to_transactions(frame)
    end = max(tx.epoch for tx in history)
    shift = math.floor((before - end) / 86400) * 86400
    users = replay_profiles(tx._replace(epoch=tx.epoch + shift) for tx in history)
    merchants, _ = merchants_known_by(history, frame[LABEL].to_numpy(dtype=bool), end, shift)
    epochs = np.array([tx.epoch for tx in history])
    counted = merchant_activity(id_texts(frame["merchant_id"]), epochs, id_texts(frame["user_id"]))
    for merchant_id, days in counted.items():
        merchant = merchants.setdefault(merchant_id, MerchantProfile(merchant_id))
        for day, (payments, cards, new_cards) in sorted(days.items()):
            apply_activity(merchant, day + int(shift // 86400), (payments, cards, new_cards))
    return HistoryProfiles(users, merchants)


def merchants_known_by(
    history: Sequence[Transaction], is_fraud: np.ndarray, end: float, shift: float
) -> tuple[dict[str, MerchantProfile], list[Label]]:
    """The merchants' profiles from the history's labels known by `end`, moved by `shift` seconds.

    Each label becomes known DEFAULT_LABEL_DELAY after its transaction (training's replay, `labels_of`)
    and is recorded as applied, as the stream's labels are. Returns the profiles and the labels counted.
    """
    epochs = np.array([tx.epoch for tx in history])
    order = np.argsort(epochs, kind="stable")
    in_time = [history[i] for i in order.tolist()]
    labels = labels_of(
        [tx.transaction_id for tx in in_time],
        [tx.merchant_id for tx in in_time],
        epochs[order],
        is_fraud[order].tolist(),
        DEFAULT_LABEL_DELAY,
    )
    known = [label for label in labels if label.epoch <= end]
    replay = Replay()
    for label in known:
        replay.label(label._replace(epoch=label.epoch + shift))
        replay.merchants[label.merchant_id].mark_applied(label.applied_id, None, None)
    return replay.merchants, known
