"""Files from elsewhere: no currency or category, integer ids, zero amounts, ids in any script."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from infra.cli import main
from training.features import compute_features
from training.generate import generate_history
from training.io import DEFAULTS, DataFileError, check_transactions, read_transactions
from training.population.config import GeneratorConfig

MINIMAL = ["transaction_id", "user_id", "merchant_id", "amount", "timestamp", "is_fraud"]


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return generate_history(GeneratorConfig(n_transactions=4000, days=30, fraud_rate=0.05, seed=21))


def with_integer_ids(history: pd.DataFrame) -> pd.DataFrame:
    """The history with every id replaced by an integer (the same id, the same integer)."""
    out = history.copy()
    for offset, column in enumerate(("transaction_id", "user_id", "merchant_id")):
        codes, _ = pd.factorize(out[column])
        out[column] = codes.astype(np.int64) + 10**offset * 1000
    return out


def test_a_minimal_file_with_integer_ids_backtests_in_one_command_and_keeps_its_ids(history, tmp_path):
    minimal = with_integer_ids(history)[MINIMAL]
    minimal.loc[5, "amount"] = 0.0  # a card check
    data = tmp_path / "minimal.csv"
    minimal.to_csv(data, index=False)
    start = pd.to_datetime(minimal["timestamp"], utc=True, format="ISO8601").min().floor("D")
    dates = [str((start + pd.Timedelta(days=n)).date()) for n in (14, 21, 22, 29)]
    args = ["--train-start", dates[0], "--train-end", dates[1], "--test-start", dates[2]]
    args += ["--test-end", dates[3], "--threads", "1", "--no-compare", "--out", str(tmp_path / "out")]
    assert main(["backtest", str(data), *args]) == 0

    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    for column in ("transaction_id", "user_id", "merchant_id"):
        assert scores[column].dtype == np.int64
    assert set(scores["transaction_id"]) <= set(minimal["transaction_id"])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["data"]["defaulted_columns"] == ["currency", "category"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"category {DEFAULTS['category']!r}" in report


def test_integer_ids_give_the_features_their_text_gives(history):
    as_text = history.copy()
    check_transactions(as_text, source="text", labelled=True)
    as_integers = with_integer_ids(history)
    as_text_again = as_integers.copy()
    for column in ("transaction_id", "user_id", "merchant_id"):
        as_text_again[column] = as_text_again[column].astype(str)
    check_transactions(as_integers, source="integers", labelled=True)
    check_transactions(as_text_again, source="text", labelled=True)
    left = compute_features(as_integers, check=False, workers=1).values
    right = compute_features(as_text_again, check=False, workers=1).values
    np.testing.assert_array_equal(left, right)


def test_csv_ids_that_are_all_integers_come_back_as_integers_and_others_as_text(history, tmp_path):
    frame = history.head(50).copy()
    frame["user_id"] = [str(n) for n in range(50)]
    frame["merchant_id"] = ["007"] * 50  # not an integer's writing: text
    frame.to_csv(tmp_path / "h.csv", index=False)
    read = read_transactions(tmp_path / "h.csv", labelled=True)
    assert read["user_id"].tolist() == list(range(50))
    assert read["merchant_id"].tolist() == ["007"] * 50


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("user_id", "two words", "a space at position 3"),
        ("merchant_id", "x" * 129, "over the 128-character limit"),
        ("transaction_id", 1.5, "is not an id (text or an integer)"),
        ("amount", -0.01, "must not be negative"),
    ],
)
def test_files_follow_the_streams_rule(history, column, value, words):
    frame = history.head(20).copy()
    frame[column] = frame[column].astype(object)
    frame.loc[7, column] = value
    with pytest.raises(DataFileError, match=f"column '{column}', row 8: .* {re.escape(words)}"):
        check_transactions(frame, source="f", labelled=True)


def test_ids_in_any_script_and_zero_amounts_are_read(history):
    frame = history.head(20).copy()
    frame.loc[3, "user_id"] = "café-Zürich-東京"
    frame.loc[4, "merchant_id"] = "مقهى-٤٢"
    frame.loc[5, "amount"] = -0.0
    check_transactions(frame, source="f", labelled=True)
    assert frame.loc[3, "user_id"] == "café-Zürich-東京"
    assert str(frame.loc[5, "amount"]) == "0.0"


def test_a_user_who_only_paid_zero_gets_no_amount_ratio(history):
    frame = history.head(200).copy()
    user = frame["user_id"].iloc[0]
    frame.loc[frame["user_id"] == user, "amount"] = 0.0
    check_transactions(frame, source="f", labelled=True)
    matrix = compute_features(frame, check=False, workers=1)
    assert not np.isinf(matrix.values).any()
