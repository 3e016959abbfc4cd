"""The replay on a Dask cluster: the same features as `training.features.compute_features`, bit for bit.

A user's features read only their own transactions and their merchants' labels known before the
day's midnight; so the work splits in two, each part independent of the other:

1. merchants: the history shuffled by merchant; in each partition, its labels (each `is_fraud` known
   `label_delay` after its transaction) replayed in time order into the merchants' profiles, its
   payments counted per merchant and day, and the merchant features read once per (merchant, UTC day)
   pair (`training.features.merchant_days`);
2. users: the history shuffled by user; in each partition, its users replayed in time order through
   the Lambda's profile updates and features (`training.features.user_columns`, the function the
   single-machine replay's processes run);

then each transaction joined to its (merchant, day) row. Time order is the epoch, ties kept in the
file's order by the row number every row carries from the start, exactly as the single-machine
replay's stable sort keeps them.
"""

from __future__ import annotations

from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd

from fraudwatch.domain.features import DAY, FEATURE_NAMES, MERCHANT_FEATURES
from fraudwatch.domain.transaction import FIELDS
from training.features import USER_WIDTH, instants, labels_of, merchant_days, user_columns
from training.io import LABEL, check_transactions, id_texts

ROW = "row"
"""A transaction's position in the history (0-based): where its features go back, and its tie-break."""
TRANSACTION_ID = "transaction_id"
EPOCH, HOUR, DAY_NUMBER, MERCHANT_KEY = "epoch", "hour", "day", "merchant_key"
USER_FEATURES = FEATURE_NAMES[:USER_WIDTH]


def numbered(history: dd.DataFrame, *, source: str, labelled: bool) -> dd.DataFrame:
    """The history checked partition by partition (`training.io`'s rules), with ROW, EPOCH and HOUR.

    Rows are numbered in the order Dask reads the dataset (files in name order, rows in file order);
    `to_matrix` checks that each number is the same transaction on the command's machine. An error in
    the file names the part of the history and the row within it.
    """
    lengths = history.map_partitions(len).compute()
    offsets = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))[:-1]]).tolist()
    meta = _checked_meta(history._meta, labelled)
    return history.map_partitions(_checked, offsets=offsets, source=source, labelled=labelled, meta=meta)


def _checked_meta(meta: pd.DataFrame, labelled: bool) -> pd.DataFrame:
    columns = {name: meta[name] for name in meta.columns}
    for name in ("currency", "category"):
        columns.setdefault(name, pd.Series([], dtype=object))
    columns["amount"] = pd.Series([], dtype=np.float64)
    columns["timestamp"] = pd.Series([], dtype=object)
    if labelled:
        columns[LABEL] = pd.Series([], dtype=bool)
    frame = pd.DataFrame(columns)
    frame[ROW] = pd.Series([], dtype=np.int64)
    frame[EPOCH] = pd.Series([], dtype=np.float64)
    frame[HOUR] = pd.Series([], dtype=np.int64)
    return frame


def _checked(
    part: pd.DataFrame,
    *,
    offsets: list[int],
    source: str,
    labelled: bool,
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """One partition checked, with its rows' numbers and instants (errors name the history's row)."""
    offset = offsets[partition_info["number"]] if partition_info else 0
    part = part.reset_index(drop=True)
    where = f"{source}, its part from row {offset + 1:,}" if offset else source
    check_transactions(part, source=where, labelled=labelled)
    epochs, hours = instants(part, source=where)
    part[ROW] = np.arange(offset, offset + len(part), dtype=np.int64)
    part[EPOCH] = epochs
    part[HOUR] = hours
    return part


def feature_frame(
    history: dd.DataFrame, *, label_delay: float | None, partitions: int | None = None
) -> dd.DataFrame:
    """Each transaction's ROW, FEATURE_NAMES (float64) and, when labelled, LABEL; partitioned by user.

    `history` is `numbered`'s. `label_delay` None replays no labels (every label feature is a
    merchant's without labels), as `compute_features` does.
    """
    partitions = partitions or history.npartitions
    labelled = LABEL in history.columns
    users = history.shuffle(on="user_id", npartitions=partitions).map_partitions(
        _user_rows, labelled=labelled, meta=_user_meta(history._meta[TRANSACTION_ID], labelled)
    )
    merchant_columns = [TRANSACTION_ID, "merchant_id", "user_id", EPOCH, ROW]
    merchant_columns += [LABEL] if labelled else []
    merchants = (
        history[merchant_columns]
        .shuffle(on="merchant_id", npartitions=partitions)
        .map_partitions(_merchant_rows, label_delay=label_delay if labelled else None, meta=_merchant_meta())
    )
    # The (merchant, day) table is small beside the history (merchants x days): one partition of it
    # joins every user partition where it lies, and the history is not shuffled again.
    joined = users.merge(merchants.repartition(npartitions=1), on=[MERCHANT_KEY, DAY_NUMBER], how="inner")
    return joined[[ROW, TRANSACTION_ID, *FEATURE_NAMES, *([LABEL] if labelled else [])]]


def _user_rows(part: pd.DataFrame, *, labelled: bool) -> pd.DataFrame:
    """The user features of a partition holding whole users, with the keys of the merchant join."""
    part = part.sort_values([EPOCH, ROW])
    epochs = part[EPOCH].to_numpy()
    values = user_columns(part[list(FIELDS)], epochs, part[HOUR].to_numpy())
    rows = pd.DataFrame(values, columns=list(USER_FEATURES))
    rows.insert(0, TRANSACTION_ID, part[TRANSACTION_ID].to_numpy())
    rows.insert(0, ROW, part[ROW].to_numpy())
    rows[MERCHANT_KEY] = id_texts(part["merchant_id"]).to_numpy()
    rows[DAY_NUMBER] = np.floor_divide(epochs, DAY).astype(np.int64)
    if labelled:
        rows[LABEL] = part[LABEL].to_numpy()
    return rows


def _merchant_rows(part: pd.DataFrame, *, label_delay: float | None) -> pd.DataFrame:
    """The merchant features of each (merchant, day) pair of a partition holding whole merchants."""
    if part.empty:
        return _merchant_meta()
    part = part.sort_values([EPOCH, ROW])
    epochs = part[EPOCH].to_numpy()
    merchant_ids = id_texts(part["merchant_id"])
    labels = []
    if label_delay is not None:
        labels = labels_of(
            id_texts(part[TRANSACTION_ID]).tolist(),
            merchant_ids.tolist(),
            epochs,
            part[LABEL].to_numpy(dtype=bool).tolist(),
            label_delay,
        )
    days = merchant_days(merchant_ids, epochs, labels, id_texts(part["user_id"]))
    table = pd.DataFrame(days.values, columns=list(MERCHANT_FEATURES))
    table.insert(0, DAY_NUMBER, days.days)
    table.insert(0, MERCHANT_KEY, pd.Series(days.merchant_ids, dtype=object))
    return table


def _user_meta(transaction_ids: pd.Series, labelled: bool) -> pd.DataFrame:
    columns: dict[str, Any] = {ROW: np.int64, TRANSACTION_ID: transaction_ids.dtype}
    columns |= dict.fromkeys(USER_FEATURES, np.float64)
    columns |= {MERCHANT_KEY: object, DAY_NUMBER: np.int64}
    if labelled:
        columns[LABEL] = bool
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in columns.items()})


def _merchant_meta() -> pd.DataFrame:
    columns: dict[str, Any] = {MERCHANT_KEY: object, DAY_NUMBER: np.int64}
    columns |= dict.fromkeys(MERCHANT_FEATURES, np.float64)
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in columns.items()})


def to_matrix(features: pd.DataFrame, history: pd.DataFrame) -> np.ndarray:
    """The feature values of a gathered `feature_frame`, row i describing `history`'s row i.

    Every row must come back exactly once, and be the transaction this machine has at that position
    (the workers numbered the rows as they read them): a row lost, doubled or read in another order is
    an error, never a gap or a shifted row.
    """
    positions = features[ROW].to_numpy()
    rows = len(history)
    if len(positions) != rows or not np.array_equal(np.sort(positions), np.arange(rows)):
        raise RuntimeError(f"the cluster's replay returned {len(positions):,} rows for {rows:,}")
    here = id_texts(history[TRANSACTION_ID]).to_numpy()[positions]
    there = id_texts(features[TRANSACTION_ID]).to_numpy()
    if not np.array_equal(here, there):
        first = int(np.flatnonzero(here != there)[0])
        raise RuntimeError(
            f"the cluster read row {int(positions[first]) + 1:,} as transaction {there[first]!r}, this "
            f"machine as {here[first]!r}: give the history as one file, read in the same order by both"
        )
    values = np.empty((rows, len(FEATURE_NAMES)), dtype=np.float64)
    values[positions] = features[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    return values
