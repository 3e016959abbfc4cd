"""What the generator draws: its configuration and the columns of what it writes.

Imports nothing heavy, so the command line that builds a config starts quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

COLUMNS = (
    "transaction_id",
    "user_id",
    "merchant_id",
    "amount",
    "currency",
    "timestamp",
    "category",
    "is_fraud",
    "fraud_pattern",
)
MIN_TRANSACTIONS = 100
MAX_FRAUD_RATE = 0.5
DEFAULT_START = datetime(2026, 9, 1, tzinfo=UTC)
SUFFIXES = (".parquet", ".pq", ".csv")


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate; the same config (seed included) always gives the same data."""

    n_transactions: int = 50_000
    days: int = 60
    n_users: int | None = None
    """Default: about n_transactions / 100, at least 200."""
    n_merchants: int | None = None
    """Default: about users / 5, at least 100."""
    fraud_rate: float = 0.01
    seed: int = 7
    start: datetime = field(default=DEFAULT_START)

    def __post_init__(self) -> None:
        if self.n_transactions < MIN_TRANSACTIONS:
            raise ValueError(f"n_transactions must be at least {MIN_TRANSACTIONS}, got {self.n_transactions}")
        if self.days < 1:
            raise ValueError(f"days must be at least 1, got {self.days}")
        if not 0.0 <= self.fraud_rate <= MAX_FRAUD_RATE:
            raise ValueError(f"fraud_rate must be between 0 and {MAX_FRAUD_RATE}, got {self.fraud_rate}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        if self.start.tzinfo is None:
            raise ValueError("start needs a time zone (an aware datetime)")
        if self.n_users is not None and self.n_users < 1:
            raise ValueError(f"n_users must be at least 1, got {self.n_users}")

    @property
    def users(self) -> int:
        """The number of users, resolved."""
        return self.n_users if self.n_users is not None else max(200, self.n_transactions // 100)

    @property
    def merchants(self) -> int:
        """The number of merchants, resolved."""
        return self.n_merchants if self.n_merchants is not None else max(100, self.users // 5)
