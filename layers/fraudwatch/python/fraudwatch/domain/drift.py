"""Drift: how far live traffic's distributions have moved from the training data's, by the population
stability index (PSI) of every feature and of the score.

One binning serves training and scoring, like the features: `reference_of` cuts each column (the
features, then the score) at the deciles of the training rows and records each bin's share; live rows
are counted in the same bins (`bin_counts`, a few numpy operations per batch, no per-record Python),
and `psi` compares the two. Missing values (a user's first payment has no spread) have a bin of their
own. PSI below 0.1 is usually read as stable, 0.1-0.2 as a shift worth watching, 0.2 and above as a
shift the model was not trained for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.rows import feature_matrix

SCORE = "score"
COLUMNS = (*FEATURE_NAMES, SCORE)
"""What drift is measured on: every feature, in the model's order, then the score."""
BINS = 10
"""Bins a column is cut into at its training deciles (equal edges leave a bin empty), plus the missing bin."""
SLOTS = BINS + 1
EPSILON = 1e-4
"""The share an empty bin counts as, so a bin empty on one side gives a large but finite PSI."""
ALARM_PSI = 0.2


@dataclass(frozen=True, slots=True)
class Reference:
    """Each column's inner bin edges (BINS - 1, ascending) and its training shares (SLOTS, missing last)."""

    edges: np.ndarray
    """(len(COLUMNS), BINS - 1) float64."""
    shares: np.ndarray
    """(len(COLUMNS), SLOTS) float64, rows summing to 1."""
    top_features: tuple[str, ...] = ()
    """The features the model leans on most (by gain), whose drift alarms; () for every feature."""

    def to_dict(self) -> dict[str, Any]:
        """The model card's `reference` entry: per column, its edges and shares."""
        return {
            "bins": BINS,
            "top_features": list(self.top_features),
            "columns": {
                name: {"edges": self.edges[i].tolist(), "shares": self.shares[i].tolist()}
                for i, name in enumerate(COLUMNS)
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        """A card's `reference` back; ValueError naming the column when it does not fit this code."""
        columns = data.get("columns")
        if not isinstance(columns, Mapping) or data.get("bins") != BINS:
            raise ValueError(f"reference: expected {BINS} bins per column")
        edges, shares = [], []
        for name in COLUMNS:
            column = columns.get(name)
            if not isinstance(column, Mapping):
                raise ValueError(f"reference: no column {name!r}")
            edge, share = np.asarray(column["edges"], float), np.asarray(column["shares"], float)
            if edge.shape != (BINS - 1,) or share.shape != (SLOTS,) or not np.all(np.diff(edge) >= 0):
                raise ValueError(f"reference: column {name!r} has malformed edges or shares")
            edges.append(edge)
            shares.append(share)
        top = tuple(str(name) for name in data.get("top_features", ()))
        if not set(top) <= set(FEATURE_NAMES):
            raise ValueError(
                f"reference: top_features {sorted(set(top) - set(FEATURE_NAMES))} are no features"
            )
        return cls(np.vstack(edges), np.vstack(shares), top)

    @property
    def watched(self) -> tuple[str, ...]:
        """The features whose drift alarms: the top ones, or every one when the card names none."""
        return self.top_features or FEATURE_NAMES


def reference_of(features: np.ndarray, scores: np.ndarray, top_features: tuple[str, ...] = ()) -> Reference:
    """The reference distribution of training rows (features in COLUMNS' order) and their scores."""
    matrix = _with_scores(features, scores)
    quantiles = np.linspace(0, 1, BINS + 1)[1:-1]
    edges = np.vstack(
        [
            np.nanquantile(column, quantiles) if np.any(~np.isnan(column)) else np.zeros(BINS - 1)
            for column in matrix.T
        ]
    )
    counts = _count(matrix, edges)
    return Reference(edges, counts / max(len(matrix), 1), top_features)


def bin_counts(
    reference: Reference,
    rows: Sequence[Sequence[float]] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """A batch's counts per column and bin, (len(COLUMNS), SLOTS) int64, in the reference's bins."""
    matrix = _with_scores(rows, scores)
    return _count(matrix, reference.edges)


def psi(expected: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Population stability index per column: sum over bins of (actual - expected) * ln(actual / expected).

    `expected` are shares, `counts` live counts (rows: columns); NaN for a column with no live rows.
    """
    totals = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        actual = np.maximum(counts / totals, EPSILON)
    expected = np.maximum(expected, EPSILON)
    return np.asarray(((actual - expected) * np.log(actual / expected)).sum(axis=-1))


class WindowDrift(NamedTuple):
    """One closed window: its start, rows, and PSI per column (COLUMNS' order)."""

    start: int
    rows: int
    psi: np.ndarray

    def of(self, name: str) -> float:
        """One column's PSI."""
        return float(self.psi[COLUMNS.index(name)])


def window_drift(reference: Reference, windows: Mapping[int, np.ndarray], min_rows: int) -> list[WindowDrift]:
    """PSI per column of each window holding at least `min_rows` rows, oldest first."""
    found = []
    for start in sorted(windows):
        rows = int(windows[start][COLUMNS.index(SCORE)].sum())
        if rows >= min_rows:
            found.append(WindowDrift(start, rows, psi(reference.shares, windows[start])))
    return found


def drifting(reference: Reference, drifts: Sequence[WindowDrift], windows: int = 2) -> list[str]:
    """The score and top features at or above the alarm's PSI in each of the last `windows` windows."""
    if len(drifts) < windows:
        return []
    names = [SCORE, *reference.watched]
    return [name for name in names if all(d.of(name) >= ALARM_PSI for d in drifts[-windows:])]


def settled_windows(
    now: float, *, window_seconds: int, windows: int, settle_seconds: float
) -> tuple[int, int]:
    """The span [since, until) of the last `windows` windows closed at least `settle_seconds` ago: the
    recorders flush a window's last counts within their flush period after it closes, so a window
    measured sooner would miss some of them."""
    until = int((now - settle_seconds) // window_seconds) * window_seconds
    return until - windows * window_seconds, until


class DriftRecorder(Protocol):
    """Where the scoring service reports each batch's rows and champion scores (an adapter aggregates)."""

    def observe(
        self,
        model_version: str,
        reference: Reference,
        rows: Sequence[Sequence[float]],
        scores: Sequence[float],
    ) -> None:
        """Count one batch's rows and scores in the champion's reference bins."""
        ...


def _with_scores(
    features: Sequence[Sequence[float]] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> np.ndarray:
    """The feature rows (checked by `feature_matrix`) with each one's score as a last column, as doubles."""
    return np.column_stack([feature_matrix(features, np.float64), np.asarray(scores, dtype=np.float64)])


def _count(matrix: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per column and bin: a value's bin is the number of edges at or below it; missing last."""
    bins = (matrix[:, :, None] >= edges[None, :, :]).sum(axis=2)
    bins[np.isnan(matrix)] = BINS
    flat = bins + np.arange(matrix.shape[1]) * SLOTS
    return np.bincount(flat.ravel(), minlength=matrix.shape[1] * SLOTS).reshape(matrix.shape[1], SLOTS)
