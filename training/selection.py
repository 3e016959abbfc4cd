"""Model selection over time: hyperparameters chosen on time-ordered folds inside the training period.

A model that is early-stopped and weighted on one validation tail is tuned to that tail (issue 16: on a
history the project did not make, ~42 rounds chosen on a day and a half, coarse histogram bins in the
sparse tail). So each candidate configuration (tree method and histogram resolution, depth, learning
rate, `min_child_weight`, imbalance weighting) is trained on `folds` expanding windows: fold k
validates on the k-th of the last `folds` windows of the training period, each as long as its
validation period, and trains on every row before that window less the label delay (the labels a
model trained then could have had). The configuration with the best mean average precision over the
folds wins; it is refitted once on the whole training period with the mean of its folds' stopping
rounds. Its scores on the last fold (the split's validation period, out of sample) choose the
thresholds: the refitted model has seen that period, so its own scores there would be flattered.

The default search is small (`fraudwatch train` on 1,000,000 transactions stays within its 120 s
budget); `--search wide` tries more, for a history where the time is worth it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the command line imports this module to describe --search: no numpy at import
    import numpy as np

WEIGHTINGS: dict[str, Callable[[float], float]] = {
    "none": lambda ratio: 1.0,
    "sqrt": math.sqrt,
    "balanced": lambda ratio: ratio,
}
"""scale_pos_weight as a function of neg/pos in the rows a model trains on."""


@dataclass(frozen=True, slots=True)
class Config:
    """One candidate: XGBoost parameters over the base ones, and an imbalance weighting."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    weighting: str = "none"


_COARSE = {"max_bin": 256, "min_child_weight": 10.0}
"""The parameters fraudwatch trained with before the search: coarse bins, leaves of some weight."""
_FINE = {"max_bin": 1024, "min_child_weight": 1.0}
"""Fine bins and light leaves: what separates a sparse tail, such as an amount no genuine payment reaches."""


def _wide() -> tuple[Config, ...]:
    configs = []
    for method in ("hist", "exact"):
        for depth in (4, 6, 8):
            for eta, weight in ((0.1, 1.0), (0.05, 3.0)):
                for weighting in ("none", "sqrt", "balanced"):
                    params: dict[str, Any] = {"tree_method": method, "max_depth": depth, "eta": eta}
                    params["min_child_weight"] = weight
                    if method == "hist":
                        params["max_bin"] = 1024
                    configs.append(
                        Config(f"{method}-d{depth}-eta{eta}-mcw{weight:g}-{weighting}", params, weighting)
                    )
    return tuple(configs)


@dataclass(frozen=True, slots=True)
class Search:
    """A search: how many folds, and the configurations tried."""

    name: str
    folds: int
    configs: tuple[Config, ...]


SEARCHES = {
    "small": Search(
        "small",
        2,
        tuple(
            Config(f"{grain}-{weighting}", params, weighting)
            for grain, params in (("coarse", _COARSE), ("fine", _FINE))
            for weighting in ("none", "sqrt")
        ),
    ),
    "wide": Search("wide", 3, _wide()),
}
DEFAULT_SEARCH = "small"


@dataclass(frozen=True, slots=True)
class Fold:
    """One fold: rows to train on, rows to validate on, and the validation window's bounds."""

    train: np.ndarray
    validation: np.ndarray
    start: float
    end: float


def time_folds(
    epochs: np.ndarray, train: np.ndarray, validation: np.ndarray, folds: int, gap: float
) -> list[Fold]:
    """`folds` consecutive windows, each as long as the validation period, the last being it; each fold
    trains on the rows of `train | validation` before its window less `gap` seconds.

    Windows that leave a fold without fraud on either side are dropped by the caller, not here: which
    rows are fraud is not this function's business.
    """
    period = train | validation
    start = float(epochs[validation].min())
    width = max(float(epochs[validation].max()) - start, 1.0)
    made = []
    for k in range(folds - 1, 0, -1):
        window_start = start - k * width
        window = period & (epochs >= window_start) & (epochs < window_start + width)
        made.append(Fold(period & (epochs < window_start - gap), window, window_start, window_start + width))
    made.append(Fold(period & (epochs < start - gap), validation, start, start + width))
    return made


@dataclass(frozen=True, slots=True)
class Candidate:
    """One configuration as tried: its fold scores, stopping rounds, and the mean that ranks it."""

    name: str
    params: dict[str, Any]
    weighting: str
    scale_pos_weight: float
    """On the whole training period (the refit's); each fold weighs by its own rows' ratio."""
    fold_average_precision: tuple[float, ...]
    fold_rounds: tuple[int, ...]

    @property
    def validation_average_precision(self) -> float:
        """The mean over the folds: what ranks the candidates."""
        return fmean(self.fold_average_precision)

    @property
    def best_iteration(self) -> int:
        """The refit's last round (0-based): the mean of the folds' stopping rounds."""
        return max(round(fmean(self.fold_rounds)), 1) - 1

    def to_dict(self) -> dict[str, Any]:
        """The model card's record of this candidate."""
        return {
            "name": self.name,
            "params": self.params,
            "weighting": self.weighting,
            "scale_pos_weight": self.scale_pos_weight,
            "fold_average_precision": list(self.fold_average_precision),
            "fold_rounds": list(self.fold_rounds),
            "validation_average_precision": self.validation_average_precision,
            "best_iteration": self.best_iteration,
        }


def best(candidates: Sequence[Candidate]) -> Candidate:
    """The candidate of the best mean fold average precision (the first listed on a tie)."""
    return max(candidates, key=lambda c: c.validation_average_precision)


def add_search_option(parser: argparse.ArgumentParser) -> None:
    """`--search`, as `fraudwatch train` and `fraudwatch backtest` take it."""
    described = "; ".join(
        f"{s.name}: {len(s.configs)} configurations on {s.folds} time-ordered folds"
        for s in SEARCHES.values()
    )
    parser.add_argument(
        "--search",
        choices=tuple(SEARCHES),
        default=DEFAULT_SEARCH,
        help=f"model selection inside the training period ({described}; default {DEFAULT_SEARCH})",
    )


def selection_lines(selection: dict[str, Any]) -> list[str]:
    """The model card's `selection`, as the report and the card's markdown show it."""
    folds = selection["folds"]
    gap = selection["label_delay_gap_days"]
    return [
        f"Kept `{selection['chosen']}` ({selection['rounds']} rounds, scale_pos_weight "
        f"{selection['scale_pos_weight']:.2f}) of the {selection['search']} search: the best mean average "
        f"precision over {len(folds)} time-ordered folds (windows from "
        + ", ".join(fold["validation_start"][:10] for fold in folds)
        + f"; each trained on the rows before its window less {gap:g} days of label delay), then refitted "
        "on the whole training period.",
        "",
        "| configuration | "
        + " | ".join(f"fold {i} AP" for i in range(1, len(folds) + 1))
        + " | mean AP | rounds |",
        "| --- | " + "--- | " * len(folds) + "--- | --- |",
        *[
            f"| {c['name']} | "
            + " | ".join(f"{ap:.4f}" for ap in c["fold_average_precision"])
            + f" | {c['validation_average_precision']:.4f} | {c['best_iteration'] + 1} |"
            for c in selection["candidates"]
        ],
    ]
