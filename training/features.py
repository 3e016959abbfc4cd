"""Offline features: history replayed in time order through the Lambda's own feature functions.

Nothing here defines a feature. Each transaction becomes the same `Transaction` the stream's parser
builds (the columns are checked by `training.io` with the contract's rules, the timestamp is parsed
row by row with the contract's own parser), and then, with a profile per user kept in process,
`user_features(profile, tx)` describes it and `apply(profile, tx)` folds it in, exactly as the Lambda
does. Offline and online features are therefore equal by construction; `tests/unit/test_parity.py`
checks it.

Labels are fed back as production gets them: a labelled file's `is_fraud` of each transaction becomes
a `Label` known `label_delay` seconds after it (default 7 days, a typical chargeback delay), counted
with `apply_label` in a profile per merchant in time order; each merchant's payments are counted per
UTC day (`day_activity`). A transaction's merchant features (`merchant_features`) read only the labels
known and the payments made before its day's midnight, so they are computed once per merchant and
day, apart from the users' replay (which processes may share).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat, starmap

import numpy as np
import pandas as pd
from tqdm import tqdm

from fraudwatch.domain.features import (
    DAY,
    FEATURE_NAMES,
    MERCHANT_FEATURES,
    apply,
    apply_label,
    day_activity,
    merchant_features,
    user_features,
)
from fraudwatch.domain.label import DEFAULT_LABEL_DELAY, Label
from fraudwatch.domain.merchant import MerchantProfile
from fraudwatch.domain.profile import UserProfile

# The contract's own timestamp parser: offline instants are the stream's by construction.
from fraudwatch.domain.transaction import FIELDS, Transaction, parse_timestamp
from fraudwatch.errors import InvalidRecordError
from training.io import LABEL, DataFileError, check_transactions, id_texts


@dataclass(frozen=True, slots=True)
class FeatureMatrix:
    """Features of every transaction, row i describing the frame's row i."""

    values: np.ndarray
    """float64, shape (rows, len(FEATURE_NAMES)), NaN where a feature is undefined."""
    epochs: np.ndarray
    """Each transaction's instant, epoch seconds."""
    order: np.ndarray
    """The replay order: row indices sorted by time (stable, so ties keep the file's order)."""

    @property
    def names(self) -> tuple[str, ...]:
        """The columns' feature names."""
        return FEATURE_NAMES


CANONICAL_TIMESTAMP = (
    r"[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
"""The common ISO 8601 form, `2026-09-01T14:03:07.250+02:00`, whose instant and hour are vectorised
(years from 1000: pandas accepts a year 0 that Python's calendar does not have)."""


def to_transactions(
    frame: pd.DataFrame, *, source: str = "data", at: tuple[np.ndarray, np.ndarray] | None = None
) -> list[Transaction]:
    """The frame's rows (already checked by `training.io`) as the contract's Transactions, in order.

    `at` is the rows' `instants`, when already computed.
    """
    epochs, hours = at if at is not None else instants(frame, source=source)
    rows = zip(
        id_texts(frame["transaction_id"]).tolist(),
        id_texts(frame["user_id"]).tolist(),
        id_texts(frame["merchant_id"]).tolist(),
        frame["amount"].astype("float64").tolist(),
        frame["currency"].tolist(),
        frame["timestamp"].tolist(),
        frame["category"].tolist(),
        epochs.tolist(),
        hours.tolist(),
        strict=True,
    )
    return list(starmap(Transaction, rows))


def instants(frame: pd.DataFrame, *, source: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """Each row's instant (epoch seconds) and local hour, exactly as the contract's parser gives them."""
    texts = frame["timestamp"]
    fast, epochs, hours = _canonical_instants(texts)
    for row in np.flatnonzero(~fast).tolist():
        epochs[row], hours[row] = _instant(texts.iat[row], row, source)
    return epochs, hours


def _canonical_instants(texts: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epoch seconds and local hour of the timestamps in the canonical form, vectorised.

    Exactly what the contract's parser gives: the instant in whole microseconds divided by 10**6 is
    the same correctly rounded float as `datetime.timestamp()`, and the local hour is the one written.
    Other forms, and canonical-looking ones pandas cannot place (30 February), are flagged not fast
    and go through the contract's parser row by row, which also names the bad ones.
    """
    canonical = texts.str.fullmatch(CANONICAL_TIMESTAMP).to_numpy(dtype=bool, na_value=False)
    parsed = pd.to_datetime(texts.where(canonical), utc=True, format="ISO8601", errors="coerce")
    fast = canonical & parsed.notna().to_numpy()
    micros = parsed.where(fast, pd.Timestamp(0, tz="UTC")).dt.as_unit("us").astype("int64").to_numpy()
    hours = texts.str.slice(11, 13).where(fast, "0").astype("int64").to_numpy()
    return fast, micros / 1e6, hours.copy()  # writable: rows in other forms are filled in


def _instant(text: object, row: int, source: str) -> tuple[float, int]:
    try:
        instant = parse_timestamp(text)
    except InvalidRecordError as exc:
        problem = f"column 'timestamp', row {row + 1}: {text!r} {exc.reason}"
        raise DataFileError(f"{source}: {problem}") from exc
    return instant.timestamp(), instant.hour


def compute_features(
    frame: pd.DataFrame,
    *,
    source: str = "data",
    check: bool = True,
    label_delay: float | None = DEFAULT_LABEL_DELAY,
    workers: int | None = None,
    progress: bool = False,
    at: tuple[np.ndarray, np.ndarray] | None = None,
) -> FeatureMatrix:
    """Replay the frame's transactions in time order, with its labels fed back, and collect their features.

    A frame with `is_fraud` feeds each label back `label_delay` seconds after its transaction; None (or
    a frame without labels) replays no labels, so every label feature is that of a merchant without
    labels. `check=False` skips the column checks for a frame that `training.io` has already checked;
    `at` is the rows' `instants`, when the caller has already computed them.

    The user features and the merchant features are replayed apart, since neither profile reads the
    other: `workers` processes share the users' replay (a user's profile depends only on their own
    transactions, so the result is the same bits however many there are), while this process replays
    the labels into the merchants' profiles once. Default: one worker per core for PARALLEL_FROM rows
    or more, otherwise none (this process replays the users too).
    """
    if check:
        check_transactions(frame, source=source, labelled=False)
    epochs, hours = at if at is not None else instants(frame, source=source)
    order = np.argsort(epochs, kind="stable")
    labels: list[Label] = []
    if label_delay is not None and LABEL in frame.columns:
        labels = labels_of(
            id_texts(frame["transaction_id"]).take(order).tolist(),
            id_texts(frame["merchant_id"]).take(order).tolist(),
            epochs[order],
            frame[LABEL].to_numpy(dtype=bool)[order].tolist(),
            label_delay,
        )
    parts = _partition(frame["user_id"], order, workers or default_workers(len(frame)))
    tasks = [(frame.take(rows)[list(FIELDS)], epochs[rows], hours[rows]) for rows in parts]
    values = np.empty((len(frame), len(FEATURE_NAMES)), dtype=np.float64)
    if len(tasks) == 1:
        values[order, :USER_WIDTH] = user_columns(*tasks[0], progress=progress)
        values[:, USER_WIDTH:] = merchant_columns(frame, epochs, labels)
        return FeatureMatrix(values=values, epochs=epochs, order=order)
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(len(tasks), mp_context=context) as pool:
        futures = {pool.submit(user_columns, *task): rows for task, rows in zip(tasks, parts, strict=True)}
        values[:, USER_WIDTH:] = merchant_columns(frame, epochs, labels)
        waiting = tqdm(
            as_completed(futures),
            total=len(futures),
            desc=f"replay ({len(tasks)} processes)",
            unit="share",
            disable=not progress,
        )
        for future in waiting:
            values[futures[future], :USER_WIDTH] = future.result()
    return FeatureMatrix(values=values, epochs=epochs, order=order)


USER_WIDTH = len(FEATURE_NAMES) - len(MERCHANT_FEATURES)
"""The user features come first in FEATURE_NAMES, the merchant features after them."""
assert FEATURE_NAMES[USER_WIDTH:] == MERCHANT_FEATURES

PARALLEL_FROM = 200_000
"""Rows from which the users' replay is shared between processes (below, starting them costs more)."""


def default_workers(rows: int) -> int:
    """The processes that share the users' replay of `rows` transactions by default."""
    return 1 if rows < PARALLEL_FROM else max(1, min(len(os.sched_getaffinity(0)), 4))


def _partition(users: pd.Series, order: np.ndarray, workers: int) -> list[np.ndarray]:
    """The row indices of each worker's users, in time order; users dealt out by their first code."""
    if workers == 1:
        return [order]
    codes = pd.factorize(users)[0][order] % workers
    return [order[codes == worker] for worker in range(workers)]


def user_columns(
    frame: pd.DataFrame, epochs: np.ndarray, hours: np.ndarray, progress: bool = False
) -> np.ndarray:
    """The user features of the frame's rows (in time order), a row per row.

    The frame holds whole users (every transaction of each of its users), so any partition of a
    history by user gives the same bits: the processes here share the replay this way, and so do the
    Dask workers of `training.distributed`.
    """
    transactions = to_transactions(frame, at=(epochs, hours))
    with _without_cycle_collection():
        rows = Replay().run(transactions, range(len(transactions)), progress)
    return np.array(rows, dtype=np.float64).reshape(-1, USER_WIDTH)


def merchant_columns(frame: pd.DataFrame, epochs: np.ndarray, labels: Sequence[Label]) -> np.ndarray:
    """The merchant features of every row: its merchant's profile with `labels` (in time order) replayed,
    and the frame's payments counted day by day."""
    days = merchant_days(id_texts(frame["merchant_id"]), epochs, labels, id_texts(frame["user_id"]))
    rows: np.ndarray = days.values[days.pair_of_row]
    return rows


@dataclass(frozen=True, slots=True)
class MerchantDays:
    """The merchant features of each (merchant, UTC day) pair that rows fall on."""

    merchant_ids: list[str]
    """Each pair's merchant."""
    days: np.ndarray
    """Each pair's UTC day (epoch seconds // DAY), int64."""
    values: np.ndarray
    """Each pair's MERCHANT_FEATURES, float64."""
    pair_of_row: np.ndarray
    """Each row's pair."""


def merchant_days(
    merchant_ids: pd.Series, epochs: np.ndarray, labels: Sequence[Label], cards: pd.Series
) -> MerchantDays:
    """The merchant features of the (merchant, day) pairs of the rows, with `labels` (in time order) replayed
    and the rows' payments (by their `cards`, the user ids) counted per merchant and day.

    A transaction reads only the labels known before its day's midnight and the payments of earlier
    days (`merchant_features`), so each (merchant, day) pair is computed once, at that midnight, with
    every label of earlier days applied. A merchant's profile reads only its own labels and payments:
    any partition of the rows and their labels by merchant gives the same pairs, in any row order.
    """
    codes, uniques = pd.factorize(merchant_ids)
    names = uniques.tolist()
    days = np.floor_divide(epochs, DAY).astype(np.int64)
    first = int(days.min())
    span = int(days.max()) - first + 1
    pairs, inverse = np.unique(codes.astype(np.int64) * span + (days - first), return_inverse=True)
    pair_codes, pair_days = np.divmod(pairs, span)
    by_day = np.argsort(pair_days, kind="stable")
    replay = Replay()
    merchants = replay.merchants
    for code, activity in enumerate(_activity(codes, days, cards)):
        merchants[names[code]] = MerchantProfile(names[code], activity=activity)
    rows = np.empty((len(pairs), len(MERCHANT_FEATURES)), dtype=np.float64)
    next_label, n_labels = 0, len(labels)
    with _without_cycle_collection():
        for pair, code, offset in zip(
            by_day.tolist(), pair_codes[by_day].tolist(), pair_days[by_day].tolist(), strict=True
        ):
            day = first + offset
            while next_label < n_labels and int(labels[next_label].epoch // DAY) < day:
                replay.label(labels[next_label])
                next_label += 1
            rows[pair] = merchant_features(merchants.get(names[code]), day)
    return MerchantDays(
        merchant_ids=[names[code] for code in pair_codes.tolist()],
        days=pair_days + first,
        values=rows,
        pair_of_row=inverse.reshape(-1),
    )


def merchant_activity(
    merchant_ids: pd.Series, epochs: np.ndarray, cards: pd.Series
) -> dict[str, dict[int, list[int]]]:
    """Each merchant's `day_activity` of every UTC day it has payments, by merchant id."""
    codes, uniques = pd.factorize(merchant_ids)
    days = np.floor_divide(epochs, DAY).astype(np.int64)
    return dict(zip(uniques.tolist(), _activity(codes.astype(np.int64), days, cards), strict=True))


def _activity(codes: np.ndarray, days: np.ndarray, cards: pd.Series) -> list[dict[int, list[int]]]:
    """Each merchant's (by code) `day_activity` of every day it has payments, its days counted in order.

    What a day counts does not depend on its rows' order (`day_activity`).
    """
    order = np.lexsort((days, codes))
    merchant_of, day_of, card_of = (
        codes[order].tolist(),
        days[order].tolist(),
        cards.to_numpy()[order].tolist(),
    )
    bounds = np.flatnonzero(np.diff(codes[order]) | np.diff(days[order])) + 1
    activity: list[dict[int, list[int]]] = [{} for _ in range(int(codes.max()) + 1 if len(codes) else 0)]
    last_seen: dict[str, int] = {}
    previous = -1
    with _without_cycle_collection():
        for start, end in zip([0, *bounds.tolist()], [*bounds.tolist(), len(order)], strict=True):
            code, day = merchant_of[start], day_of[start]
            if code != previous:
                last_seen, previous = {}, code
            activity[code][day] = day_activity(card_of[start:end], last_seen, day)
    return activity


def labels_of(
    transaction_ids: Sequence[str],
    merchant_ids: Sequence[str],
    epochs: np.ndarray,
    is_fraud: Sequence[bool],
    delay: float,
) -> list[Label]:
    """Each transaction's label, known `delay` seconds after it, in the transactions' order (time order).

    Offline labels carry no `labelled_at` text: only their instant is ever read.
    """
    if delay < 0:
        raise ValueError(f"the label delay cannot be negative, got {delay}")
    known = (epochs + delay).tolist()
    rows = zip(transaction_ids, merchant_ids, is_fraud, repeat(""), known)
    return list(starmap(Label, rows))


class Replay:
    """The Lambda's profile updates, with in-process stores: users fed transactions in time order,
    merchants fed labels in time order."""

    def __init__(self) -> None:
        self.users: dict[str, UserProfile] = {}
        self.merchants: dict[str, MerchantProfile] = {}

    def run(
        self, transactions: Sequence[Transaction], order: Iterable[int], progress: bool = False
    ) -> list[tuple[float, ...]]:
        """Each transaction's user features, in `order` (time order), folding it in after."""
        users = self.users
        rows: list[tuple[float, ...]] = []
        append = rows.append
        for i in tqdm(
            order, desc="replay", unit="tx", unit_scale=True, disable=not progress, mininterval=0.5
        ):
            tx = transactions[i]
            profile = users.get(tx.user_id)
            if profile is None:
                profile = users[tx.user_id] = UserProfile(tx.user_id)
            append(user_features(profile, tx))
            apply(profile, tx)
        return rows

    def label(self, label: Label) -> None:
        """Count one label in its merchant's profile."""
        merchant = self.merchants.get(label.merchant_id)
        if merchant is None:
            merchant = self.merchants[label.merchant_id] = MerchantProfile(label.merchant_id)
        apply_label(merchant, label)


def replay_profiles(transactions: Iterable[Transaction]) -> dict[str, UserProfile]:
    """Each user's profile after their transactions, folded in the order given (time order)."""
    profiles: dict[str, UserProfile] = {}
    for tx in transactions:
        profile = profiles.get(tx.user_id)
        if profile is None:
            profile = profiles[tx.user_id] = UserProfile(tx.user_id)
        apply(profile, tx)
        profile.mark_applied(tx.transaction_id, None, None)
    return profiles


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector for the replay.

    The replay makes millions of objects that all live on and form no cycles; the collector would
    rescan them again and again (about a tenth of the replay's time).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
