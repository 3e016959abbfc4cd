"""What to backtest and how: the options of `fraudwatch backtest`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fraudwatch.domain.label import DEFAULT_LABEL_DELAY
from training.defaults import CARD_TOP_K
from training.pipeline import DEFAULT_SEED
from training.selection import DEFAULT_SEARCH


@dataclass(frozen=True, slots=True)
class PeriodBounds:
    """Bounds given as instants (epoch seconds); None: from the day counts (`--*-days`)."""

    train_start: float | None = None
    train_end: float | None = None
    test_start: float | None = None
    test_end: float | None = None


def parse_bound(text: str) -> float:
    """A period bound from the command line: a date (its UTC midnight) or an ISO 8601 instant with offset."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a date (2026-09-01) or an ISO 8601 instant") from exc
    if parsed.tzinfo is None:
        if parsed != datetime(parsed.year, parsed.month, parsed.day):
            raise ValueError(f"{text!r} needs a UTC offset such as '+00:00' (a bare date is UTC midnight)")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """What to backtest and how (the command line's options)."""

    train_days: int = 35
    gap_days: int = 7
    test_days: int | None = None
    """None: the test period runs to the end of the file."""
    bounds: PeriodBounds = PeriodBounds()
    """Period bounds given as dates; each wins over the day count it replaces."""
    label_delay: float = DEFAULT_LABEL_DELAY
    """Seconds after its transaction that a fraud label becomes known."""
    top_k: int = CARD_TOP_K
    compare: bool = True
    seed: int = DEFAULT_SEED
    nthread: int = 2
    search: str = DEFAULT_SEARCH
    """The model selection search (training.selection.SEARCHES)."""
    csv: bool = False
