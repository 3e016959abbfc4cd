"""`--engine dask` on LocalClusters of real worker processes: the same features bit for bit, the same
metrics, xgboost.dask training, a lost worker, and datasets written whole."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask.delayed import delayed
from distributed import Client, LocalCluster
from sklearn.metrics import average_precision_score

from fraudwatch.adapters.model import load_model
from fraudwatch.domain.features import DAY, FEATURE_NAMES
from infra.cli import main
from training.distributed.cluster import ClusterError, connect, run
from training.distributed.engine import DaskEngine, write_dataset
from training.distributed.replay import numbered, to_matrix
from training.features import compute_features
from training.generate import generate_history
from training.io import LABEL, DataFileError, read_transactions
from training.population.config import GeneratorConfig
from training.train import time_split, train_model

BACKTEST = ["--train-days", "16", "--gap-days", "4", "--threads", "1", "--top-k", "5", "--no-compare"]


@pytest.fixture(scope="module")
def history_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled history in which some users pay twice in the same instant: ties keep the file's order."""
    frame = generate_history(GeneratorConfig(n_transactions=6000, days=30, fraud_rate=0.05, seed=11))
    same_user = frame["user_id"].eq(frame["user_id"].shift())
    ties = np.flatnonzero(same_user.to_numpy())[:40]
    assert len(ties) == 40
    frame.loc[frame.index[ties], "timestamp"] = frame["timestamp"].to_numpy()[ties - 1]
    path = tmp_path_factory.mktemp("history") / "history.parquet"
    frame.to_parquet(path, index=False, row_group_size=1500)
    return path


@pytest.fixture(scope="module")
def history(history_file: Path) -> pd.DataFrame:
    return read_transactions(history_file, labelled=True)


@pytest.fixture(scope="module")
def dataset(history: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same history as a Parquet dataset of three files of unequal sizes."""
    directory = tmp_path_factory.mktemp("dataset")
    for number, (start, stop) in enumerate(((0, 1000), (1000, 4500), (4500, len(history)))):
        history.iloc[start:stop].to_parquet(directory / f"part-{number}.parquet", index=False)
    return directory


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.mark.parametrize("label_delay", [7 * DAY, 0.5 * DAY, None])
def test_the_clusters_features_are_the_single_process_replays_bit_for_bit(
    client, history, dataset, label_delay
):
    single = compute_features(history, check=False, label_delay=label_delay)
    engine = DaskEngine(client, history=str(dataset), say=lambda _: None)
    distributed = engine.features(history, source="dataset", label_delay=label_delay)
    assert distributed.values.view(np.uint64).tolist() == single.values.view(np.uint64).tolist()
    assert np.array_equal(distributed.order, single.order)
    # The merchant risk is really replayed (not every row a merchant's without labels) when labels are.
    merchant = distributed.values[:, FEATURE_NAMES.index("merchant_labels_30d")]
    assert (merchant > 0).any() == (label_delay is not None)


def test_a_history_sent_from_here_gives_the_same_bits(client, history):
    single = compute_features(history, check=False)
    engine = DaskEngine(client, say=lambda _: None)  # no Parquet: the frame is sent to the workers
    assert np.array_equal(
        engine.features(history, source="frame", label_delay=7 * DAY).values, single.values, equal_nan=True
    )


def test_a_bad_row_read_by_a_worker_is_named_as_on_this_machine(client, history, tmp_path):
    history.iloc[:1000].to_parquet(tmp_path / "part-0.parquet", index=False)
    broken = history.iloc[1000:2000].copy()
    broken.loc[broken.index[4], "amount"] = -3.0
    broken.to_parquet(tmp_path / "part-1.parquet", index=False)
    loaded = numbered(dd.read_parquet(str(tmp_path)), source="history", labelled=True)
    with pytest.raises(
        DataFileError, match=r"history, its part from row 1,001: column 'amount', row 5: -3.0"
    ):
        run(client, loaded, "the replay")


def test_xgboost_dask_boosts_the_searchs_models_on_the_workers(client, history, dataset):
    engine = DaskEngine(client, history=str(dataset), train_here=False, say=lambda _: None)
    matrix = engine.features(history, source="dataset", label_delay=7 * DAY)
    labels = history[LABEL].to_numpy(dtype=bool)
    split = time_split(matrix.epochs)
    on_cluster = train_model(
        matrix.values, labels, split, epochs=matrix.epochs, gap=7 * DAY, nthread=1, boosting=engine.boosting()
    )
    here = train_model(matrix.values, labels, split, epochs=matrix.epochs, gap=7 * DAY, nthread=1)
    assert [c.name for c in on_cluster.candidates] == [c.name for c in here.candidates]
    assert len(on_cluster.folds) == len(here.folds)
    assert list(on_cluster.booster.feature_names or ()) == list(FEATURE_NAMES)
    assert on_cluster.booster.num_boosted_rounds() == on_cluster.chosen.best_iteration + 1
    # The validation scores are read in row order: misaligned, their average precision would be the
    # fraud rate (5%), not close to this machine's model's.
    y_val = labels[split.validation]
    cluster_ap = average_precision_score(y_val, on_cluster.validation_scores)
    assert cluster_ap == pytest.approx(on_cluster.chosen.fold_average_precision[-1])
    assert cluster_ap > 0.5
    assert abs(cluster_ap - here.chosen.fold_average_precision[-1]) < 0.1


def test_the_wide_search_cannot_train_on_the_cluster(history_file, capsys):
    # Its exact-tree configurations train on one machine only: refused before any cluster starts.
    options = ["--engine", "dask", "--train-on", "cluster", "--search", "wide"]
    assert main(["backtest", str(history_file), *options]) == 2
    assert "--search wide cannot train with --train-on cluster" in capsys.readouterr().err


def test_a_backtest_on_a_local_cluster_gives_the_same_metrics(history_file, tmp_path):
    here, there, features = tmp_path / "here", tmp_path / "there", tmp_path / "features"
    assert main(["backtest", str(history_file), *BACKTEST, "--out", str(here)]) == 0
    # Trained here by default: the model of the run without Dask, so every figure.
    dask_options = ["--engine", "dask", "--workers", "2", "--features", str(features)]
    assert main(["backtest", str(history_file), *BACKTEST, "--out", str(there), *dask_options]) == 0
    metrics = [json.loads((out / "metrics.json").read_text()) for out in (here, there)]
    for key in ("models", "decisions", "periods", "test_frauds_by_pattern"):
        assert metrics[0][key] == metrics[1][key]
    assert metrics[0]["model"]["flag"] == metrics[1]["model"]["flag"]
    scores = [pd.read_parquet(out / "scores.parquet") for out in (here, there)]
    pd.testing.assert_frame_equal(scores[0], scores[1])
    written = pd.read_parquet(features)
    assert sorted(written["row"].tolist()) == list(range(len(pd.read_parquet(history_file))))
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left over


def test_train_on_a_local_cluster_writes_a_bundle_trained_with_xgboost_dask(history_file, tmp_path, capsys):
    bundle, reports = tmp_path / "bundle", tmp_path / "reports"
    options = ["--engine", "dask", "--train-on", "cluster", "--threads", "1", "--bundle", str(bundle)]
    assert main(["train", "--data", str(history_file), *options, "--reports", str(reports)]) == 0
    assert "(xgboost.dask, on the cluster)" in capsys.readouterr().out
    model = load_model(bundle)  # the Lambda's adapter loads it
    card = json.loads((bundle / "model_card.json").read_text())
    assert model.version == card["version"]
    assert card["model"]["features"] == list(FEATURE_NAMES)
    assert card["model"]["rounds"] > 0
    assert card["metrics"]["test"]["average_precision"] > 0.5


def test_the_dask_options_need_engine_dask(history_file, tmp_path, capsys):
    assert main(["backtest", str(history_file), "--scheduler", "tcp://127.0.0.1:8786"]) == 2
    assert "--scheduler needs --engine dask" in capsys.readouterr().err
    assert main(["train", "--data", str(history_file), "--workers", "4"]) == 2
    assert "--workers needs --engine dask" in capsys.readouterr().err
    assert main(["train", "--data", str(history_file), "--train-on", "cluster"]) == 2
    assert "--train-on needs --engine dask" in capsys.readouterr().err
    options = ["--engine", "dask", "--scheduler", "tcp://127.0.0.1:8786", "--workers", "4"]
    assert main(["backtest", str(history_file), *options]) == 2
    assert "--workers is for the LocalCluster, not --scheduler's, got 4" in capsys.readouterr().err


def test_a_scheduler_out_of_reach_is_a_cluster_error_naming_it():
    with (
        pytest.raises(ClusterError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"),
        connect("tcp://127.0.0.1:9", timeout="1s"),
    ):
        pass


def test_a_lost_worker_is_a_cluster_error_naming_the_work():
    # A task that kills its worker's process: after allowed-failures + 1 such deaths Dask gives up.
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
        pytest.raises(ClusterError, match=r"the replay: a worker was lost .* on 1 workers in a row"),
    ):
        run(client, delayed(os._exit)(1), "the replay")


def test_a_rerun_replaces_a_dataset_whole_or_leaves_the_last_one(client, tmp_path):
    target = tmp_path / "features"
    first = pd.DataFrame({"row": range(10), "value": 1.0})
    write_dataset(dd.from_pandas(first, npartitions=3), str(target))
    second = pd.DataFrame({"row": range(4), "value": 2.0})
    write_dataset(dd.from_pandas(second, npartitions=2), str(target))
    pd.testing.assert_frame_equal(pd.read_parquet(target), second)

    def fail(part: pd.DataFrame) -> pd.DataFrame:
        if part["row"].min() > 0:
            raise ValueError("a partition that cannot be computed")
        return part

    broken = dd.from_pandas(first, npartitions=3).map_partitions(fail, meta=first.iloc[:0])
    with pytest.raises(ValueError, match="cannot be computed"):
        write_dataset(broken, str(target))
    pd.testing.assert_frame_equal(pd.read_parquet(target), second)
    assert [p.name for p in tmp_path.iterdir()] == ["features"]


def test_features_that_come_back_misplaced_or_missing_are_an_error():
    history = pd.DataFrame({"transaction_id": ["a", "b", "c"]})
    back = pd.DataFrame({"row": [2, 0, 1], "transaction_id": ["c", "a", "b"]})
    for name in FEATURE_NAMES:
        back[name] = back["row"] * 1.0
    assert to_matrix(back, history)[:, 0].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(RuntimeError, match="returned 2 rows for 3"):
        to_matrix(back.iloc[:2], history)
    shifted = back.assign(transaction_id=["a", "b", "c"])  # the workers read the rows in another order
    with pytest.raises(RuntimeError, match=r"read row 3 as transaction 'a', this machine as 'c'"):
        to_matrix(shifted, history)
