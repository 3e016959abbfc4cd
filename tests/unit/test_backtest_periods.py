"""`fraudwatch backtest` with periods given by date: a warm-up before training, and named period errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from infra.cli import main
from training.generate import generate_history
from training.population.config import GeneratorConfig

FAST = ["--threads", "1", "--top-k", "5", "--no-compare"]


@pytest.fixture(scope="module")
def history_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = GeneratorConfig(n_transactions=5000, days=30, fraud_rate=0.05, seed=12)
    path = tmp_path_factory.mktemp("history") / "history.parquet"
    generate_history(config).to_parquet(path, index=False)
    return path


def day(history: pd.DataFrame, offset: int) -> pd.Timestamp:
    """The UTC midnight `offset` days after the history's first."""
    first: pd.Timestamp = pd.to_datetime(history["timestamp"], utc=True, format="ISO8601").min()
    return first.floor("D") + pd.Timedelta(days=offset)


def test_dates_place_the_periods_and_what_comes_before_training_only_warms(history_file, tmp_path):
    history = pd.read_parquet(history_file)
    at = pd.to_datetime(history["timestamp"], utc=True, format="ISO8601")
    train_start, train_end, test_start, test_end = (day(history, n) for n in (10, 20, 22, 27))
    out = tmp_path / "out"
    dates = ["--train-start", train_start.date().isoformat(), "--train-end", train_end.isoformat()]
    dates += ["--test-start", test_start.date().isoformat(), "--test-end", test_end.date().isoformat()]
    assert main(["backtest", str(history_file), *dates, *FAST, "--out", str(out)]) == 0

    scores = pd.read_parquet(out / "scores.parquet")
    expected = history[(at >= test_start) & (at < test_end)]
    assert scores["transaction_id"].tolist() == expected["transaction_id"].tolist()
    periods = json.loads((out / "metrics.json").read_text())["periods"]
    assert periods["warm-up"]["rows"] == int((at < train_start).sum()) > 0
    assert periods["training"]["rows"] == int(((at >= train_start) & (at < train_end)).sum())
    assert periods["fitting"]["rows"] + periods["validation"]["rows"] == periods["training"]["rows"]
    assert periods["gap"]["rows"] == int(((at >= train_end) & (at < test_start)).sum())
    assert "| warm-up |" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("dates", "message"),
    [
        ({"--train-start": 12, "--train-end": 12}, "the training period from"),
        ({"--train-start": 12, "--train-end": 8}, "is empty or out of order: give a --train-end after"),
        ({"--train-end": 12, "--test-start": 10}, "before the training period ends"),
        ({"--train-end": 12, "--test-start": 14, "--test-end": 13}, "give a --test-end after --test-start"),
        ({"--train-start": 40, "--train-end": 45}, "the training period from"),
        ({"--train-end": 12, "--test-start": 40}, "the test period from"),
    ],
)
def test_a_period_that_is_empty_or_out_of_order_is_named(history_file, tmp_path, capsys, dates, message):
    history = pd.read_parquet(history_file)
    args = [part for option, n in dates.items() for part in (option, day(history, n).isoformat())]
    assert main(["backtest", str(history_file), *args, *FAST, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    error = err.splitlines()[-1]
    assert error.startswith("fraudwatch backtest: error: ")
    assert message in error
    assert not (tmp_path / "out").exists()


def test_a_date_that_is_not_one_is_refused_by_its_option(history_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["backtest", str(history_file), "--train-start", "next tuesday", "--out", str(tmp_path / "o")])
    assert exit_.value.code == 2
    assert "--train-start" in capsys.readouterr().err


def test_help_explains_the_dates(capsys):
    with pytest.raises(SystemExit):
        main(["backtest", "--help"])
    text = capsys.readouterr().out
    for option in ("--train-start", "--train-end", "--test-start", "--test-end", "warm the profiles"):
        assert option in " ".join(text.split())
