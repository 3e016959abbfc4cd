"""`--engine dask`: a command's replay and training on a Dask cluster, behind the single-machine interfaces.

`DaskEngine.features` stands for `training.features.compute_features` (the same FeatureMatrix, bit for
bit). `DaskEngine.boosting` says where `training.train.train_model` boosts its models: here, on the
gathered matrix (the default: the same model, bit for bit), or, with `train_here` off, with
`xgboost.dask` on the feature matrix where it lies, on the workers (the same search, folds and choice;
close trees, not equal ones). What follows
(thresholds, evaluation, baseline, bundle, scoring with the bundle, the report) is the commands' own,
on this machine: it needs the test period's scores and the history's columns, not the matrix.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
from distributed import Client

from training.distributed.cluster import gather, run
from training.distributed.replay import feature_frame, numbered, to_matrix
from training.distributed.train import ClusterFold
from training.features import FeatureMatrix, instants
from training.io import LABEL
from training.selection import Fold
from training.train import Boosting, FoldBoosting

ROWS_PER_PARTITION = 250_000
"""Rows per partition of a history sent from this machine (a generated one, or a CSV file)."""


@dataclass(slots=True)
class DaskEngine:
    """The replay and the training of one command on the cluster behind `client`."""

    client: Client
    history: str | None = None
    """A Parquet file or dataset (a directory, local or an fsspec URL) the workers read themselves;
    None: the frame given to `features` is sent to them."""
    features_out: str | None = None
    """Where to write the feature matrix as a Parquet dataset (local or an fsspec URL), or None."""
    train_here: bool = True
    """Train on this machine on the gathered features (the model of a run without Dask); False: with
    xgboost.dask on the workers."""
    progress: bool = False
    say: Callable[[str], None] = print
    _features: dd.DataFrame | None = field(default=None, init=False)
    _labels: np.ndarray | None = field(default=None, init=False)

    def features(
        self,
        frame: pd.DataFrame,
        *,
        source: str,
        label_delay: float | None,
        at: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> FeatureMatrix:
        """`compute_features` of the checked `frame`, replayed on the cluster (from `history` if given)."""
        if self.history is not None:
            loaded = dd.read_parquet(self.history)
        else:
            partitions = max(1, -(-len(frame) // ROWS_PER_PARTITION))
            loaded = dd.from_pandas(frame, npartitions=partitions, sort=False)
        labelled = LABEL in frame.columns
        self._labels = frame[LABEL].to_numpy(dtype=bool) if labelled else None
        history = numbered(loaded, source=source, labelled=labelled)
        # At least two partitions a worker, so that each has work while another's is joined.
        partitions = max(history.npartitions, 2 * len(self.client.scheduler_info(n_workers=-1)["workers"]))
        self._features = run(
            self.client,
            feature_frame(history, label_delay=label_delay, partitions=partitions),
            f"the replay of {source} on the cluster",
            show_progress=self.progress,
        )
        if self.features_out is not None:
            write_dataset(self._features, self.features_out)
            self.say(f"dask: features written to {self.features_out}")
        values = to_matrix(gather(self.client, self._features, "gathering the features"), frame)
        epochs, _ = at if at is not None else instants(frame, source=source)
        return FeatureMatrix(values=values, epochs=epochs, order=np.argsort(epochs, kind="stable"))

    def boosting(self) -> Boosting | None:
        """How `train_model` boosts its models: with xgboost.dask on the matrix the last `features` left
        on the workers, or None (this process, on the gathered matrix: `train_here`)."""
        if self.train_here:
            return None
        if self._features is None or self._labels is None:
            raise RuntimeError("DaskEngine.boosting needs the features replayed on the cluster first")
        client, features, labels = self.client, self._features, self._labels

        def on_cluster(fold: Fold) -> FoldBoosting:
            return ClusterFold(client, features, labels, fold)

        return on_cluster


def write_dataset(frame: dd.DataFrame, target: str) -> None:
    """Write a Parquet dataset whole or not at all: into a new sibling, then moved to `target`.

    A rerun replaces the earlier dataset only once the new one is complete; on a local disk the move
    is a rename, on an object store (no renames there) a copy then delete of the new prefix, still
    never a mix of two runs' files.
    """
    fs, path = fsspec.core.url_to_fs(target)
    path = path.rstrip("/")
    staging = f"{os.path.dirname(path)}/.{os.path.basename(path)}.new-{uuid.uuid4().hex[:8]}"
    try:
        frame.to_parquet(fs.unstrip_protocol(staging), write_index=False)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        fs.mv(staging, path, recursive=True)
    finally:
        if fs.exists(staging):
            fs.rm(staging, recursive=True)
