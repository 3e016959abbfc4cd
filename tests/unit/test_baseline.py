"""The baseline's textbook features, by hand, and the baseline beside the model in every report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from infra.cli import main
from training.baseline import BASELINE_FEATURES, baseline_features
from training.features import instants
from training.generate import generate_history
from training.io import check_transactions
from training.population.config import GeneratorConfig

DAY = 86400.0


def frame_of(rows: list[tuple[str, str, float, str, bool]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "merchant_id", "amount", "timestamp", "is_fraud"])
    frame.insert(0, "transaction_id", [f"t{n}" for n in range(len(rows))])
    check_transactions(frame, source="by hand", labelled=True)
    return frame


def column(values: np.ndarray, name: str) -> list[float]:
    return [float(v) for v in values[:, BASELINE_FEATURES.index(name)]]


def test_the_textbook_features_by_hand():
    # 2026-11-06 is a Friday; +09:00 puts the second payment on Saturday 01:00 local; the 15th is a
    # Sunday, the 16th a Monday.
    frame = frame_of(
        [
            ("a", "m", 10.0, "2026-11-06T10:00:00+00:00", True),
            ("a", "m", 30.0, "2026-11-07T01:00:00+09:00", False),
            ("b", "m", 5.0, "2026-11-08T12:00:00+00:00", False),
            ("a", "n", 20.0, "2026-11-15T09:00:00+00:00", False),
            ("b", "m", 7.0, "2026-11-16T09:00:00+00:00", False),
        ]
    )
    epochs, hours = instants(frame)
    values = baseline_features(frame, epochs, hours, label_delay=7 * DAY)
    assert column(values, "is_weekend") == [0, 1, 1, 1, 0]
    assert column(values, "is_night") == [0, 1, 0, 0, 0]
    # Card a: the second payment (16:00 UTC on the 6th) is 6 hours after the first.
    assert column(values, "card_count_1d") == [1, 2, 1, 1, 1]
    assert column(values, "card_mean_amount_1d") == [10, 20, 5, 20, 7]
    assert column(values, "card_count_30d") == [1, 2, 1, 3, 2]
    assert column(values, "card_mean_amount_7d") == [10, 20, 5, 20, 7]  # b paid 5 eight days before
    # Merchant m, 7 days late: on the 16th, the window ends on the 9th at 09:00 and holds the three
    # payments of the 6th to the 8th, one of them fraud.
    assert column(values, "merchant_count_7d") == [0, 0, 0, 0, 3]
    assert column(values, "merchant_fraud_rate_7d")[4] == 1 / 3
    assert column(values, "merchant_count_1d") == [0, 0, 0, 0, 1]  # the 8th at 12:00
    assert column(values, "merchant_fraud_rate_30d")[:4] == [0, 0, 0, 0]


def test_every_report_shows_the_baseline_beside_the_model(tmp_path):
    history = generate_history(GeneratorConfig(n_transactions=4000, days=24, fraud_rate=0.05, seed=31))
    data = tmp_path / "h.parquet"
    history.to_parquet(data, index=False)
    out = tmp_path / "bt"
    args = ["--train-days", "14", "--gap-days", "2", "--threads", "1", "--no-compare", "--out", str(out)]
    assert main(["backtest", str(data), *args]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    scores = pd.read_parquet(out / "scores.parquet")
    assert scores["score_baseline"].between(0, 1).all()
    assert metrics["models"]["baseline"]["roc_auc"] > 0.5
    assert (
        "| metric | with merchant risk | baseline | change vs baseline |" in (out / "report.md").read_text()
    )

    reports, bundle = tmp_path / "reports", tmp_path / "bundle"
    train = [
        "train",
        "--data",
        str(data),
        "--threads",
        "1",
        "--reports",
        str(reports),
        "--bundle",
        str(bundle),
    ]
    assert main(train) == 0
    (report,) = Path(reports).glob("*/report.md")
    assert "| metric | model | baseline | change vs baseline |" in report.read_text()
    card = json.loads((bundle / "model_card.json").read_text())
    assert set(card["baseline"]["test"]) == {"model", "baseline"}
