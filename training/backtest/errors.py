"""The backtest's errors."""

from __future__ import annotations

from fraudwatch.errors import UsageError


class BacktestError(UsageError):
    """The backtest cannot run as asked: periods that do not fit the file, or an --out it must not replace."""
