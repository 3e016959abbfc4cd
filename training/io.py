"""Reading transaction files (CSV or Parquet) in the transaction contract, labelled or not.

Every column is checked up front, vectorised, with the same rules as the stream's contract
(`fraudwatch.domain.transaction`), so a bad file fails before any work with an error that names the
column, the (1-based) data row and the reason. Timestamps are parsed later, row by row, by the exact
function the Lambda uses (see `training.features`), and a bad one is named the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# The contract's own rules, so a file's checks and the stream's cannot drift apart.
from fraudwatch.domain.transaction import CATEGORY_PATTERN, CURRENCIES, FIELDS, ID_PATTERN, MAX_AMOUNT
from fraudwatch.errors import UsageError

LABEL = "is_fraud"
PATTERN = "fraud_pattern"
NO_PATTERN = "none"
IDENTIFIERS = ("transaction_id", "user_id", "merchant_id")
TEXT_COLUMNS = (*IDENTIFIERS, "currency", "timestamp", "category", PATTERN)
SUFFIXES = (".csv", ".parquet", ".pq")
ID_RULE = "must be 1-64 letters, digits, '_', '.', ':' or '-'"
CATEGORY_RULE = "must be 1-32 lowercase letters, digits or '_'"


class DataFileError(UsageError):
    """A transaction file that cannot be read or does not follow the contract."""


def read_transactions(path: Path, *, labelled: bool) -> pd.DataFrame:
    """Read and check a transaction file; `labelled` requires the `is_fraud` column.

    The result has the contract's columns (text as str, amount as float64), `is_fraud` as bool when
    present, and `fraud_pattern` as str when present; other columns are kept as read.
    """
    frame = _read(path)
    check_transactions(frame, source=str(path), labelled=labelled)
    return frame


def check_transactions(frame: pd.DataFrame, *, source: str, labelled: bool) -> None:
    """Check (and normalise in place) a frame of transactions; raise DataFileError naming the problem."""
    required = (*FIELDS, LABEL) if labelled else FIELDS
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise DataFileError(
            f"{source}: missing column {missing[0]!r} (a transaction file needs {', '.join(required)})"
        )
    if frame.empty:
        raise DataFileError(f"{source}: no transactions")
    for name in IDENTIFIERS:
        _check_pattern(frame, name, ID_PATTERN.pattern, ID_RULE, source)
    _check_pattern(frame, "category", CATEGORY_PATTERN.pattern, CATEGORY_RULE, source)
    _check_currency(frame, source)
    _check_amount(frame, source)
    _check_timestamp(frame, source)
    _check_unique_ids(frame, source)
    if LABEL in frame.columns:
        frame[LABEL] = _labels(frame[LABEL], source)
    if PATTERN in frame.columns:
        frame[PATTERN] = frame[PATTERN].fillna(NO_PATTERN).astype(str)


def _read(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataFileError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        if suffix == ".csv":
            # Text columns stay text ("007" is an id, not 7) and empty cells stay "" so they are named.
            return pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str), keep_default_na=False)
        return pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataFileError(f"{path}: cannot read: {exc}") from exc


def _fail(source: str, column: str, row: int, value: object, reason: str) -> DataFileError:
    shown = value.item() if isinstance(value, np.generic) else value
    return DataFileError(f"{source}: column {column!r}, row {row + 1}: {shown!r} {reason}")


def _first(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def _text(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    """The column as str values; anything else (a number, a null) is named."""
    series = frame[column]
    is_str = np.array([type(value) is str for value in series.tolist()], dtype=bool)
    if not is_str.all():
        row = _first(~is_str)
        raise _fail(source, column, row, series.iloc[row], "is not text")
    return series


def _check_pattern(frame: pd.DataFrame, column: str, pattern: str, reason: str, source: str) -> None:
    series = _text(frame, column, source)
    bad = ~series.str.fullmatch(pattern).to_numpy(dtype=bool)
    if bad.any():
        row = _first(bad)
        raise _fail(source, column, row, series.iloc[row], reason)


def _check_currency(frame: pd.DataFrame, source: str) -> None:
    series = _text(frame, "currency", source)
    bad = ~series.isin(CURRENCIES).to_numpy()
    if bad.any():
        row = _first(bad)
        raise _fail(source, "currency", row, series.iloc[row], "is not a supported ISO 4217 code")


def _check_amount(frame: pd.DataFrame, source: str) -> None:
    raw = frame["amount"]
    if pd.api.types.is_bool_dtype(raw):
        raise _fail(source, "amount", 0, raw.iloc[0], "is not a number")
    amount = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
    for bad, reason in (
        (np.isnan(amount), "is not a number"),
        (~np.isfinite(amount), "is not finite"),
        (amount <= 0, "must be greater than 0"),
        (amount > MAX_AMOUNT, f"exceeds the {MAX_AMOUNT:,.0f} limit"),
    ):
        if bad.any():
            row = _first(bad)
            raise _fail(source, "amount", row, raw.iloc[row], reason)
    frame["amount"] = amount


def _check_timestamp(frame: pd.DataFrame, source: str) -> None:
    series = frame["timestamp"]
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        # Parquet may keep instants as timestamps; the contract's form is the ISO string with offset.
        frame["timestamp"] = series.map(lambda instant: instant.isoformat())
        return
    if pd.api.types.is_datetime64_any_dtype(series):
        raise _fail(source, "timestamp", 0, str(series.iloc[0]), "needs a UTC offset such as '+00:00'")
    _text(frame, "timestamp", source)


def _check_unique_ids(frame: pd.DataFrame, source: str) -> None:
    duplicated = frame["transaction_id"].duplicated().to_numpy()
    if duplicated.any():
        row = _first(duplicated)
        raise _fail(source, "transaction_id", row, frame["transaction_id"].iloc[row], "appears twice")


def _labels(series: pd.Series, source: str) -> pd.Series:
    """`is_fraud` as bool: accepts booleans, 0/1, and true/false text."""
    if pd.api.types.is_bool_dtype(series) and not series.isna().any():
        return series.astype(bool)
    text = series.astype(str).str.strip().str.lower()
    mapped = text.map({"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False})
    bad = mapped.isna().to_numpy()
    if bad.any():
        row = _first(bad)
        raise _fail(source, LABEL, row, series.iloc[row], "is not a boolean (true/false or 1/0)")
    return mapped.astype(bool)
