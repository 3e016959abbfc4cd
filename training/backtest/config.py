"""What to backtest and how: the options of `fraudwatch backtest`."""

from __future__ import annotations

from dataclasses import dataclass

from fraudwatch.domain.label import DEFAULT_LABEL_DELAY
from training.pipeline import DEFAULT_SEED


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """What to backtest and how (the command line's options)."""

    train_days: int = 35
    gap_days: int = 7
    test_days: int | None = None
    """None: the test period runs to the end of the file."""
    label_delay: float = DEFAULT_LABEL_DELAY
    """Seconds after its transaction that a fraud label becomes known."""
    top_k: int = 50
    compare: bool = True
    seed: int = DEFAULT_SEED
    nthread: int = 2
    csv: bool = False
