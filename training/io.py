"""Reading transaction files (CSV or Parquet) in the transaction contract, labelled or not.

Every column is checked up front, vectorised, with the same rules as the stream's contract
(`fraudwatch.domain.transaction`), so a bad file fails before any work with an error that names the
column, the (1-based) data row and the reason. Timestamps are parsed later, row by row, by the exact
function the Lambda uses (see `training.features`), and a bad one is named the same way.

Files are more forgiving than the stream in two ways, since histories come from elsewhere: `currency`
and `category` may be missing (they get the DEFAULTS, and `is_new_category` is then only "first
payment"), and ids may be integers as well as text. Ids are checked with the stream's own rule on their
text, and kept as given: an integer id comes back as an integer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# The contract's own rules, so a file's checks and the stream's cannot drift apart.
from fraudwatch.domain.transaction import (
    AMOUNT_RULE,
    CATEGORY_PATTERN,
    CURRENCIES,
    FIELDS,
    ID_PATTERN,
    MAX_AMOUNT,
    MIN_AMOUNT,
    id_problem,
)
from fraudwatch.errors import UsageError

LABEL = "is_fraud"
PATTERN = "fraud_pattern"
NO_PATTERN = "none"
IDENTIFIERS = ("transaction_id", "user_id", "merchant_id")
TEXT_COLUMNS = (*IDENTIFIERS, "currency", "timestamp", "category", PATTERN)
SUFFIXES = (".csv", ".parquet", ".pq")
DEFAULTS = {"currency": "USD", "category": "unspecified"}
"""What a file without these columns is read with; `defaulted_columns` says which were."""
DEFAULTED = "fraudwatch_defaulted_columns"
"""The frame's `attrs` key listing the columns filled with DEFAULTS."""
REQUIRED = tuple(name for name in FIELDS if name not in DEFAULTS)
INTEGER_ID = r"-?(?:0|[1-9][0-9]{0,17})"
"""A CSV id column whose every value is written like this is read as integers (it fits int64)."""
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
    """Check (and normalise in place) a frame of transactions; raise DataFileError naming the problem.

    Missing `currency` and `category` columns are added with DEFAULTS and listed in
    `frame.attrs[DEFAULTED]`.
    """
    required = (*REQUIRED, LABEL) if labelled else REQUIRED
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise DataFileError(
            f"{source}: missing column {missing[0]!r} (a transaction file needs {', '.join(required)}; "
            f"{' and '.join(DEFAULTS)} are optional)"
        )
    if frame.empty:
        raise DataFileError(f"{source}: no transactions")
    defaulted = [name for name in DEFAULTS if name not in frame.columns]
    for name in defaulted:
        frame[name] = DEFAULTS[name]
    frame.attrs[DEFAULTED] = defaulted
    for name in IDENTIFIERS:
        _check_id(frame, name, source)
    _check_pattern(frame, "category", CATEGORY_PATTERN.pattern, CATEGORY_RULE, source)
    _check_currency(frame, source)
    _check_amount(frame, source)
    _check_timestamp(frame, source)
    _check_unique_ids(frame, source)
    if LABEL in frame.columns:
        frame[LABEL] = _labels(frame[LABEL], source)
    if PATTERN in frame.columns:
        frame[PATTERN] = frame[PATTERN].fillna(NO_PATTERN).astype(str)


def defaulted_columns(frame: pd.DataFrame) -> list[str]:
    """The columns a checked frame was missing and got DEFAULTS for."""
    return list(frame.attrs.get(DEFAULTED, []))


def defaults_note(columns: list[str]) -> str:
    """What a report says about columns read with DEFAULTS ("" when none were)."""
    if not columns:
        return ""
    given = ", ".join(f"{name} {DEFAULTS[name]!r}" for name in columns)
    note = f"Not in the file, read with defaults: {given}."
    if "category" in columns:
        note += " With one category for all, is_new_category only marks a user's first payment."
    return note


def id_texts(series: pd.Series) -> pd.Series:
    """An id column as the text the stream would carry (integers in decimal)."""
    return series if series.dtype == object and _all_text(series) else series.astype(str)


def _all_text(series: pd.Series) -> bool:
    return all(type(value) is str for value in series.tolist())


def _read(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataFileError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        if suffix == ".csv":
            # Text columns stay text ("007" is an id, not 7) and empty cells stay "" so they are named.
            frame = pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str), keep_default_na=False)
            for name in IDENTIFIERS:
                if name in frame.columns and frame[name].str.fullmatch(INTEGER_ID).all():
                    frame[name] = frame[name].astype("int64")
            return frame
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


def _check_id(frame: pd.DataFrame, column: str, source: str) -> None:
    """Ids are text or integers, and their text follows the stream's rule (`id_problem`).

    The ASCII ids of ID_PATTERN, all valid on the stream, are matched vectorised; the rest one by one.
    """
    series = frame[column]
    if pd.api.types.is_integer_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return
    is_id = np.array(
        [
            type(v) is str or (isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_))
            for v in series.tolist()
        ],
        dtype=bool,
    )
    if not is_id.all():
        row = _first(~is_id)
        raise _fail(source, column, row, series.iloc[row], "is not an id (text or an integer)")
    texts = series.astype(str)
    for row in np.flatnonzero(~texts.str.fullmatch(ID_PATTERN.pattern).to_numpy(dtype=bool)).tolist():
        problem = id_problem(str(texts.iat[row]))
        if problem is not None:
            raise _fail(source, column, row, series.iloc[row], f"is not an id: {problem}")


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
        (amount < MIN_AMOUNT, AMOUNT_RULE),
        (amount > MAX_AMOUNT, f"exceeds the {MAX_AMOUNT:,.0f} limit"),
    ):
        if bad.any():
            row = _first(bad)
            raise _fail(source, "amount", row, raw.iloc[row], reason)
    frame["amount"] = amount + 0.0  # the stream's -0.0 is 0 too


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
    duplicated = id_texts(frame["transaction_id"]).duplicated().to_numpy()
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
