"""The second kind of history: its own mechanics, a file from elsewhere's shape, and a backtest on it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from infra.cli import main
from training.other_history import AMOUNT_CUTOFF, PATTERNS, OtherHistoryConfig, other_history


def test_the_second_history_has_its_own_mechanics_and_a_bare_schema():
    history = other_history(OtherHistoryConfig(n_transactions=20_000, days=30, seed=3))
    assert list(history.columns) == [
        "transaction_id",
        "user_id",
        "merchant_id",
        "amount",
        "timestamp",
        "is_fraud",
        "fraud_pattern",
    ]
    assert history["user_id"].dtype == np.int64
    at = pd.to_datetime(history["timestamp"], utc=True, format="ISO8601")
    assert at.is_monotonic_increasing
    assert set(history.loc[history["is_fraud"], "fraud_pattern"]) == set(PATTERNS)
    assert history.loc[history["amount"] > AMOUNT_CUTOFF, "is_fraud"].all()
    testing = history[history["fraud_pattern"] == "card_testing"]
    assert (testing["amount"] < 2).all()
    assert (testing["amount"] == 0).any()
    same = other_history(OtherHistoryConfig(n_transactions=20_000, days=30, seed=3))
    pd.testing.assert_frame_equal(history, same)


def test_generate_second_then_backtest_it_in_one_command_each(tmp_path, capsys):
    data = tmp_path / "second.csv"
    generate = ["generate", "--kind", "second", "--transactions", "15000", "--days", "30", "--seed", "4"]
    assert main([*generate, "--out", str(data)]) == 0
    assert "card_testing" in capsys.readouterr().out
    out = tmp_path / "out"
    backtest = ["backtest", str(data), "--train-start", "2026-03-11", "--train-end", "2026-03-21"]
    backtest += ["--test-start", "2026-03-24", "--threads", "1", "--no-compare", "--out", str(out)]
    assert main(backtest) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["defaulted_columns"] == ["currency", "category"]
    assert set(metrics["test_frauds_by_pattern"]) <= set(PATTERNS)
    scores = pd.read_parquet(out / "scores.parquet")
    assert scores["transaction_id"].dtype == np.int64
