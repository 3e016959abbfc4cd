"""A second kind of labelled history, written apart from `training.population` and sharing none of it.

It follows the public protocol of the card-fraud textbook's simulator (Le Borgne et al., "Reproducible
Machine Learning for Credit Card Fraud Detection", chapter 3), not this project's generator: cards
with a spending profile pay at merchants near them, and fraud arrives by mechanics of its own. Its file
has only the columns a bank's export would (`transaction_id`, `user_id`, `merchant_id` as integers,
`amount`, `timestamp` in UTC, `is_fraud`, and `fraud_pattern` to read the results by); no currency, no
category. The mechanics (docs/other_history.md):

- **amount_cutoff**: every payment above AMOUNT_CUTOFF is fraud, whatever the card's habits;
- **compromised_merchant**: each day a few merchants are compromised for COMPROMISE_DAYS; every
  payment there in that window is fraud (labels come back a week later, so the first week is dark);
- **compromised_card**: each day a few cards are compromised for CARD_DAYS; a third of their payments
  in that window are multiplied by 5 and are fraud;
- **card_testing**: each day a few cards get a burst of BURST payments within minutes, of 0 or less
  than 2 at random merchants, all fraud.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from fraudwatch.domain.features import DAY

AMOUNT_CUTOFF = 220.0
COMPROMISE_DAYS = 28
CARD_DAYS = 14
BURST = 6
START = datetime(2026, 3, 1, tzinfo=UTC)
PATTERNS = ("amount_cutoff", "compromised_merchant", "compromised_card", "card_testing")


@dataclass(frozen=True, slots=True)
class OtherHistoryConfig:
    """How large a history, over how many days, from which seed."""

    n_transactions: int = 100_000
    days: int = 60
    seed: int = 7


def other_history(config: OtherHistoryConfig) -> pd.DataFrame:
    """About `config.n_transactions` labelled payments over `config.days` days, in time order."""
    rng = np.random.default_rng(config.seed)
    per_card_day = 2.0  # a card's mean payments per day (uniform on 0..4)
    cards = max(10, round(config.n_transactions / (per_card_day * config.days)))
    merchants = 2 * cards  # the textbook's 10,000 terminals for 5,000 customers
    mean_amount = rng.uniform(5, 100, cards)
    rate = rng.uniform(0, 4, cards)
    # Cards and merchants on a 100 x 100 grid; a card pays at the merchants within a radius of it.
    card_xy, merchant_xy = rng.uniform(0, 100, (cards, 2)), rng.uniform(0, 100, (merchants, 2))
    nearby = _nearby(card_xy, merchant_xy, radius=5.0)

    counts = rng.poisson(rate[:, None], (cards, config.days))
    card = np.repeat(np.tile(np.arange(cards), config.days), counts.T.ravel())
    day = np.repeat(np.repeat(np.arange(config.days), cards), counts.T.ravel())
    seconds = np.clip(rng.normal(DAY / 2, 20_000, len(card)), 0, DAY - 1)
    amount = np.round(np.abs(rng.normal(mean_amount[card], mean_amount[card] / 2)), 2)
    sizes = np.array([len(near) for near in nearby])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.concatenate(nearby)
    merchant = flat[offsets[card] + (rng.random(len(card)) * sizes[card]).astype(np.int64)]
    frame = pd.DataFrame(
        {"user_id": card, "merchant_id": merchant, "amount": amount, "epoch": day * DAY + seconds}
    )
    frame["fraud_pattern"] = "none"
    frame.loc[frame["amount"] > AMOUNT_CUTOFF, "fraud_pattern"] = "amount_cutoff"
    _compromise_merchants(frame, rng, merchants, config.days)
    _compromise_cards(frame, rng, cards, config.days)
    frame = pd.concat([frame, _card_testing(rng, cards, merchants, config.days)], ignore_index=True)
    return _finish(frame)


def _nearby(card_xy: np.ndarray, merchant_xy: np.ndarray, radius: float) -> list[np.ndarray]:
    """Per card, the merchants within `radius` (the nearest one when none is)."""
    out = []
    for xy in card_xy:
        distance = np.hypot(*(merchant_xy - xy).T)
        near = np.flatnonzero(distance < radius)
        out.append(near if len(near) else np.array([int(np.argmin(distance))]))
    return out


def _compromise_merchants(frame: pd.DataFrame, rng: np.random.Generator, merchants: int, days: int) -> None:
    per_day = max(1, merchants * 2 // 10_000)  # the textbook's 2 of 10,000 terminals a day
    for start in range(days):
        for merchant in rng.choice(merchants, per_day, replace=False).tolist():
            window = (frame["epoch"] >= start * DAY) & (frame["epoch"] < (start + COMPROMISE_DAYS) * DAY)
            hit = window & (frame["merchant_id"] == merchant) & (frame["fraud_pattern"] == "none")
            frame.loc[hit, "fraud_pattern"] = "compromised_merchant"


def _compromise_cards(frame: pd.DataFrame, rng: np.random.Generator, cards: int, days: int) -> None:
    per_day = max(1, cards * 3 // 5_000)  # the textbook's 3 of 5,000 customers a day
    for start in range(days):
        for card in rng.choice(cards, per_day, replace=False).tolist():
            window = (frame["epoch"] >= start * DAY) & (frame["epoch"] < (start + CARD_DAYS) * DAY)
            rows = np.flatnonzero(window & (frame["user_id"] == card) & (frame["fraud_pattern"] == "none"))
            chosen = rows[rng.random(len(rows)) < 1 / 3]
            frame.loc[chosen, "amount"] = np.round(frame.loc[chosen, "amount"] * 5, 2)
            frame.loc[chosen, "fraud_pattern"] = "compromised_card"


def _card_testing(rng: np.random.Generator, cards: int, merchants: int, days: int) -> pd.DataFrame:
    per_day = max(1, cards // 2_000)
    tested = rng.integers(0, cards, days * per_day)
    starts = (np.repeat(np.arange(days), per_day) + rng.uniform(0, 1, days * per_day)) * DAY
    epochs = (starts[:, None] + np.cumsum(rng.uniform(5, 90, (len(starts), BURST)), axis=1)).ravel()
    amounts = np.where(rng.random(len(epochs)) < 0.5, 0.0, np.round(rng.uniform(0.01, 2, len(epochs)), 2))
    return pd.DataFrame(
        {
            "user_id": np.repeat(tested, BURST),
            "merchant_id": rng.integers(0, merchants, len(epochs)),
            "amount": amounts,
            "epoch": np.minimum(epochs, days * DAY - 1),
            "fraud_pattern": "card_testing",
        }
    )


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    """Time order, integer ids, UTC timestamps, labels."""
    frame = frame.sort_values("epoch", kind="stable").reset_index(drop=True)
    instants = pd.Timestamp(START) + pd.to_timedelta(np.round(frame["epoch"].to_numpy(), 3), unit="s")
    return pd.DataFrame(
        {
            "transaction_id": np.arange(1, len(frame) + 1, dtype=np.int64),
            "user_id": frame["user_id"].to_numpy(dtype=np.int64),
            "merchant_id": frame["merchant_id"].to_numpy(dtype=np.int64) + 1_000_000,
            "amount": frame["amount"].to_numpy(dtype=np.float64),
            "timestamp": instants.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"),
            "is_fraud": (frame["fraud_pattern"] != "none").to_numpy(),
            "fraud_pattern": frame["fraud_pattern"].to_numpy(dtype=str),
        }
    )
