"""The models of `training.train.train_model` boosted with `xgboost.dask`, on the feature matrix where the
cluster's replay left it.

`train_model` keeps the search, the folds, the candidates' parameters and the choice; only where each
fold's models are boosted differs (`ClusterFold`, a `training.train.FoldBoosting`). They differ
numerically too: each worker sketches the quantiles of its own rows and XGBoost merges the sketches,
and row subsampling draws per worker, so the trees (and the scores) are close to the single
machine's, not equal (docs/dask.md says by how much).
"""

from __future__ import annotations

from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import xgboost as xgb
import xgboost.dask as dxgb
from dask.delayed import delayed
from distributed import Client

from fraudwatch.domain.features import FEATURE_NAMES
from training.distributed.cluster import gather, lost_workers
from training.distributed.replay import ROW
from training.io import LABEL
from training.selection import Fold
from training.train import EARLY_STOPPING_ROUNDS, MAX_ROUNDS, TrainingError, positive_ratio


class ClusterFold:
    """One fold's rows on the cluster: its models boosted by xgboost.dask (a FoldBoosting)."""

    def __init__(self, client: Client, features: dd.DataFrame, labels: np.ndarray, fold: Fold) -> None:
        """`features` is `training.distributed.replay.feature_frame`'s (persisted); `labels` the
        history's, by row, on this machine (folds are of rows)."""
        self._client = client
        self._train = _rows(features, fold.train)
        self._validation = _rows(features, fold.validation)
        self._built: dict[int, dxgb.DaskQuantileDMatrix] = {}
        self._validation_matrix: dxgb.DaskDMatrix | None = None
        self._order: np.ndarray | None = None
        self.ratio = positive_ratio(labels[fold.train])
        self.y_validation = labels[fold.validation]

    def fit(self, params: dict[str, Any], label: str) -> tuple[xgb.Booster, np.ndarray]:
        """Boost until validation's aucpr stops improving; the Booster cut at its best round, and its
        scores of the validation rows in row order."""
        with lost_workers(f"training {label} on the cluster"):
            output = dxgb.train(
                self._client,
                _cluster_params(params),
                self._matrix(params),
                num_boost_round=MAX_ROUNDS,
                evals=[(self._validation_dmatrix(), "validation")],
                early_stopping_rounds=EARLY_STOPPING_ROUNDS,
                verbose_eval=False,
            )
        booster: xgb.Booster = output["booster"]
        booster = booster[: booster.best_iteration + 1]
        return booster, self._scores(booster)

    def refit(self, params: dict[str, Any], rounds: int, label: str) -> xgb.Booster:
        """Boost a fixed number of rounds on the training rows."""
        with lost_workers(f"training {label} on the cluster"):
            output = dxgb.train(
                self._client, _cluster_params(params), self._matrix(params), num_boost_round=rounds
            )
        booster: xgb.Booster = output["booster"]
        return booster

    def _matrix(self, params: dict[str, Any]) -> dxgb.DaskQuantileDMatrix:
        """The training rows quantised at the parameters' resolution, built once per resolution."""
        bins = int(params["max_bin"])
        if bins not in self._built:
            self._built[bins] = dxgb.DaskQuantileDMatrix(
                self._client,
                _x(self._train),
                self._train[LABEL],
                feature_names=list(FEATURE_NAMES),
                missing=np.nan,
                max_bin=bins,
            )
        return self._built[bins]

    def _validation_dmatrix(self) -> dxgb.DaskDMatrix:
        if self._validation_matrix is None:
            self._validation_matrix = dxgb.DaskDMatrix(
                self._client,
                _x(self._validation),
                self._validation[LABEL],
                feature_names=list(FEATURE_NAMES),
                missing=np.nan,
            )
        return self._validation_matrix

    def _scores(self, booster: xgb.Booster) -> np.ndarray:
        """The booster's scores of the validation rows, put back in row order (they come in the
        partitions' order)."""
        scores = dxgb.inplace_predict(self._client, booster, _x(self._validation), validate_features=False)
        scored = gather(self._client, scores, "scoring the validation rows")
        if self._order is None:
            positions = gather(self._client, self._validation[ROW], "the validation rows' numbers")
            self._order = np.argsort(positions.to_numpy())
        return np.asarray(scored, dtype=np.float64)[self._order]


def _cluster_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters for xgboost.dask: each worker's booster gets as many threads as the worker has
    (this machine's thread count means nothing there); `exact` trees cannot be trained distributed."""
    if params.get("tree_method") == "exact":
        raise TrainingError(
            "the search's exact-tree configurations cannot train on a cluster (XGBoost trains exact trees "
            "on one machine only): use --search small, or --train-on here"
        )
    return {key: value for key, value in params.items() if key != "nthread"}


def _rows(features: dd.DataFrame, mask: np.ndarray) -> dd.DataFrame:
    """The rows of the feature frame that `mask` (by row number) selects."""
    # Delayed: one copy of the mask on the cluster, not one in every task.
    return features.map_partitions(_take, delayed(mask), meta=features._meta)


def _take(part: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    return part[mask[part[ROW].to_numpy()]]


def _x(rows: dd.DataFrame) -> dd.DataFrame:
    """The model's input: float32, as `training.train` and the Lambda give it."""
    return rows[list(FEATURE_NAMES)].astype(np.float32)
