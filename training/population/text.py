"""Text columns for a million rows without a Python loop over them.

Identifiers and timestamps have a fixed width, so they are written digit by digit into one byte
buffer (a column of digits per numpy operation) and handed to Arrow as a string array; columns that
repeat a few names (users, merchants, categories) are an Arrow `take` from the list of names. This
turns seconds of per-row string formatting into a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

_TIMESTAMP_TEMPLATE = b"0000-00-00T00:00:00+00:00"


def names(choices: Sequence[str], index: np.ndarray) -> pa.Array:
    """`choices[index[i]]` for every i, as an Arrow string array."""
    return pa.array(choices, type=pa.string()).take(pa.array(index))


def numbered(prefix: str, first: int, count: int, width: int = 8) -> pa.Array:
    """`prefix`NNNNNNNN numbered from `first`, zero-padded (wider past 10**width) so text sorts as numbers."""
    numbers = np.arange(first, first + count, dtype=np.int64)
    width = max(width, len(str(first + count - 1)))
    head = prefix.encode()
    buffer = np.empty((count, len(head) + width), dtype=np.uint8)
    buffer[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    _digits(buffer, len(head), numbers, width)
    return _fixed_width(buffer)


def local_timestamps(epoch: np.ndarray, offset_seconds: np.ndarray) -> pa.Array:
    """ISO 8601 local time with its offset (e.g. 2026-09-01T13:45:12+02:00) of each instant.

    `offset_seconds` is each row's UTC offset; offsets are whole minutes.
    """
    local = epoch + offset_seconds
    days = local // 86400
    seconds = local - days * 86400
    date = days.astype("datetime64[D]")
    month_start = date.astype("datetime64[M]")
    buffer = np.empty((len(epoch), len(_TIMESTAMP_TEMPLATE)), dtype=np.uint8)
    buffer[:] = np.frombuffer(_TIMESTAMP_TEMPLATE, dtype=np.uint8)
    _digits(buffer, 0, month_start.astype("datetime64[Y]").astype(np.int64) + 1970, 4)
    _digits(buffer, 5, month_start.astype(np.int64) % 12 + 1, 2)
    _digits(buffer, 8, (date - month_start).astype(np.int64) + 1, 2)
    _digits(buffer, 11, seconds // 3600, 2)
    _digits(buffer, 14, seconds // 60 % 60, 2)
    _digits(buffer, 17, seconds % 60, 2)
    buffer[:, 19] = np.where(offset_seconds < 0, ord("-"), ord("+"))
    offset_minutes = np.abs(offset_seconds) // 60
    _digits(buffer, 20, offset_minutes // 60, 2)
    _digits(buffer, 23, offset_minutes % 60, 2)
    return _fixed_width(buffer)


def _digits(buffer: np.ndarray, column: int, values: np.ndarray, width: int) -> None:
    """Write `values` as `width` zero-padded decimal digits starting at `column` of each row."""
    values = values.astype(np.int64)
    for position in range(column + width - 1, column - 1, -1):
        buffer[:, position] = ord("0") + values % 10
        values = values // 10


def _fixed_width(buffer: np.ndarray) -> pa.Array:
    """Rows of an (n, width) ASCII byte matrix as an Arrow string array, without copying per row."""
    count, width = buffer.shape
    small = width * count < 2**31
    offsets = np.arange(0, width * (count + 1), width, dtype=np.int32 if small else np.int64)
    kind = pa.StringArray if small else pa.LargeStringArray
    return kind.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(buffer)))
