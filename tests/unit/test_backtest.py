"""`fraudwatch backtest` on small generated histories: outputs, figures, input errors, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudwatch.adapters.model import load_model
from fraudwatch.domain.features import LABEL_FEATURES, MERCHANT_FEATURES
from infra.cli import main
from training.backtest.config import BacktestConfig
from training.backtest.metrics import at_false_positive_rate, daily_top_k
from training.backtest.run import run_backtest
from training.generate import generate_history
from training.population.config import GeneratorConfig

TRAIN_DAYS, GAP_DAYS = 16, 4
ARGS = ["--train-days", str(TRAIN_DAYS), "--gap-days", str(GAP_DAYS), "--threads", "1", "--top-k", "5"]
OUTPUTS = {"bundle", "daily_top_k.png", "metrics.json", "pr_curve.png", "report.md", "roc_curve.png"}


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    config = GeneratorConfig(n_transactions=6000, days=30, fraud_rate=0.05, seed=11)
    return generate_history(config)


@pytest.fixture(scope="module")
def history_file(history: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("history") / "history.parquet"
    history.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def outputs(history_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("backtest") / "out"
    assert main(["backtest", str(history_file), *ARGS, "--out", str(out)]) == 0
    return out


def instants(frame: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")


def test_the_outputs_are_complete_and_hold_exactly_the_test_period(outputs, history):
    assert {p.name for p in outputs.iterdir()} == OUTPUTS | {"scores.parquet"}
    assert not [p for p in outputs.parent.iterdir() if p.name.startswith(".")]  # no staging left over
    scores = pd.read_parquet(outputs / "scores.parquet")
    at = instants(history)
    test_start = at.min().floor("D") + pd.Timedelta(days=TRAIN_DAYS + GAP_DAYS)
    expected = history[at >= test_start]
    assert scores["transaction_id"].tolist() == expected["transaction_id"].tolist()
    for column in ("user_id", "merchant_id", "timestamp", "is_fraud", "fraud_pattern"):
        assert scores[column].tolist() == expected[column].tolist()
    assert scores["score"].between(0, 1).all()
    assert scores["score_without_merchant_risk"].between(0, 1).all()
    assert not np.array_equal(scores["score"], scores["score_without_merchant_risk"])


def test_decisions_follow_the_bundles_thresholds(outputs):
    scores = pd.read_parquet(outputs / "scores.parquet")
    model = load_model(outputs / "bundle")
    flag, reject = model.thresholds.flag, model.thresholds.reject
    expected = np.where(
        scores["score"] >= reject, "REJECTED", np.where(scores["score"] >= flag, "FLAGGED", "APPROVED")
    )
    assert scores["decision"].tolist() == expected.tolist()
    metrics = json.loads((outputs / "metrics.json").read_text())
    assert (metrics["model"]["flag"], metrics["model"]["reject"]) == (flag, reject)
    assert metrics["model"]["version"] == model.version


def test_the_metrics_match_the_written_scores(outputs):
    scores = pd.read_parquet(outputs / "scores.parquet")
    metrics = json.loads((outputs / "metrics.json").read_text())
    labels = scores["is_fraud"].to_numpy()
    for name, column in (
        ("with_merchant_risk", "score"),
        ("without_merchant_risk", "score_without_merchant_risk"),
    ):
        figures, values = metrics["models"][name], scores[column].to_numpy()
        assert figures["roc_auc"] == pytest.approx(roc_auc_score(labels, values))
        assert figures["average_precision"] == pytest.approx(average_precision_score(labels, values))
        threshold = figures["at_fpr"]["threshold"]
        negatives = values[~labels]
        assert (negatives >= threshold).mean() <= 0.01
        lower = negatives[negatives < threshold]
        if len(lower):  # the next lower negative score would alert more than 1% of the negatives
            assert (negatives >= lower.max()).mean() > 0.01
        assert figures["at_fpr"]["recall"] == pytest.approx((values[labels] >= threshold).mean())
        cm = labels & (scores["fraud_pattern"] == "card_testing").to_numpy()
        assert figures["pattern_recall"]["card_testing"] == pytest.approx((values[cm] >= threshold).mean())
    test = metrics["periods"]["test"]
    assert (test["rows"], test["frauds"]) == (len(scores), int(labels.sum()))
    training = metrics["periods"]["training"]
    assert (
        metrics["periods"]["fitting"]["rows"] + metrics["periods"]["validation"]["rows"] == training["rows"]
    )
    assert sum(metrics["periods"][p]["rows"] for p in ("training", "gap", "test")) == metrics["data"]["rows"]
    report = (outputs / "report.md").read_text()
    assert "with merchant risk" in report
    assert "without merchant risk" in report
    assert f"{metrics['models']['with_merchant_risk']['roc_auc']:.4f}" in report


def test_recall_and_precision_at_one_percent_fpr_by_hand():
    negatives = np.arange(200) / 200  # 0.000 ... 0.995: 1% of 200 is 2, so alert 0.990 and 0.995
    positives = np.array([0.999, 0.5, 0.992, 0.1])
    scores = np.concatenate([negatives, positives])
    labels = np.concatenate([np.zeros(200, bool), np.ones(4, bool)])
    point = at_false_positive_rate(scores, labels)
    assert point.threshold == 0.99
    assert (point.alerts, point.false_positive_rate, point.recall, point.precision) == (4, 0.01, 0.5, 0.5)


def test_tied_negatives_never_push_the_rate_over_one_percent():
    negatives = np.array([0.9] * 3 + [0.1] * 197)  # alerting 0.9 would alert 1.5% of them
    scores = np.concatenate([negatives, [0.95, 0.9]])
    labels = np.concatenate([np.zeros(200, bool), np.ones(2, bool)])
    point = at_false_positive_rate(scores, labels)
    assert 0.9 < point.threshold <= 0.95
    assert (point.false_positive_rate, point.recall, point.precision) == (0.0, 0.5, 1.0)


def test_daily_top_k_per_card_by_hand():
    day = 86400.0
    # Day 0: card a peaks 0.9 (no fraud), b 0.8 (fraud on another of its payments), c 0.7 (fraud).
    # Day 1: b 0.6 (fraud), c 0.2; only two cards paid, and a card caught on day 0 is blocked by then.
    epochs = np.array([0, 10, 20, 30, 40, day + 5, day + 6])
    cards = np.array(["a", "b", "b", "c", "a", "b", "c"])
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.3, 0.6, 0.2])
    labels = np.array([False, False, True, True, False, True, False])
    days = daily_top_k(scores, labels, epochs, cards, k=2)
    assert [(d.day, d.cards, d.precision) for d in days] == [("1970-01-01", 3, 0.5), ("1970-01-02", 1, 0.0)]
    # k=3 catches b and c on day 0: day 1 has no card left to rank.
    three = daily_top_k(scores, labels, epochs, cards, k=3)
    assert (three[0].cards, three[0].precision) == (3, 2 / 3)
    assert three[1].cards == 0
    assert np.isnan(three[1].precision)


def earlier_backtest(path: Path) -> Path:
    path.mkdir()
    for name in ("metrics.json", "report.md"):
        (path / name).write_text("from an earlier run")
    return path


def run_failing(args: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    before = {p: p.read_text() for p in out.iterdir()} if out.exists() else None
    assert main(["backtest", *args, *ARGS, "--out", str(out)]) == 2
    assert ({p: p.read_text() for p in out.iterdir()} if out.exists() else None) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    return capsys.readouterr().err


def test_a_missing_column_is_named_and_nothing_is_written(history, tmp_path, capsys):
    data = tmp_path / "in.csv"
    history.drop(columns=["merchant_id"]).to_csv(data, index=False)
    err = run_failing([str(data)], tmp_path / "out", capsys)
    assert "missing column 'merchant_id'" in err
    assert not (tmp_path / "out").exists()


def test_an_unparsable_timestamp_is_named_and_an_earlier_output_is_kept(history, tmp_path, capsys):
    data = tmp_path / "in.csv"
    broken = history.copy()
    broken.loc[100, "timestamp"] = "2026-09-31T10:00:00+00:00"
    broken.to_csv(data, index=False)
    err = run_failing([str(data)], earlier_backtest(tmp_path / "out"), capsys)
    assert "column 'timestamp', row 101: '2026-09-31T10:00:00+00:00'" in err


def test_unsorted_input_names_both_rows(history, tmp_path, capsys):
    data = tmp_path / "in.parquet"
    swapped = history.copy()
    swapped.iloc[[500, 501]] = swapped.iloc[[501, 500]].to_numpy()
    assert instants(swapped).iloc[501] < instants(swapped).iloc[500]  # the generator has no ties there
    swapped.to_parquet(data, index=False)
    err = run_failing([str(data)], earlier_backtest(tmp_path / "out"), capsys)
    first, second = swapped["timestamp"].iloc[500], swapped["timestamp"].iloc[501]
    assert f"row 502: timestamp {second!r} is earlier than row 501's {first!r}" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--train-days", "30"],
            "the test period from 2026-10-05T00:00:00+00:00 to the end of the file has no transactions",
        ),
        (["--test-days", "20"], "the test period of 20 days would end at"),
    ],
)
def test_periods_that_do_not_fit_the_file_say_so(history_file, tmp_path, capsys, extra, message):
    # The later --train-days wins over ARGS' own: 30 + 4 days start after a 30-day file.
    out = earlier_backtest(tmp_path / "out")
    before = {p: p.read_text() for p in out.iterdir()}
    assert main(["backtest", str(history_file), *ARGS, *extra, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert {p: p.read_text() for p in out.iterdir()} == before


def test_an_empty_test_period_says_so(history, tmp_path, capsys):
    data = tmp_path / "in.parquet"
    at = instants(history)
    start = at.min().floor("D") + pd.Timedelta(days=TRAIN_DAYS + GAP_DAYS)
    history[(at < start) | (at >= start + pd.Timedelta(days=2))].to_parquet(data, index=False)
    err = run_failing([str(data), "--test-days", "2"], tmp_path / "out", capsys)
    assert "the test period from 2026-09-21T00:00:00+00:00" in err
    assert "has no transactions" in err


def test_an_out_that_is_not_a_backtest_is_never_replaced(history_file, tmp_path, capsys):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    err = run_failing([str(history_file)], out, capsys)
    assert "is not a backtest's output" in err


def test_a_failure_while_writing_keeps_the_earlier_output(history, tmp_path, monkeypatch):
    out = earlier_backtest(tmp_path / "out")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("training.backtest.report.write_report", broken)
    config = BacktestConfig(train_days=TRAIN_DAYS, gap_days=GAP_DAYS, compare=False, nthread=1)
    with pytest.raises(OSError, match="disk full"):
        run_backtest(history.copy(), source="tiny", out=out, config=config)
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "metrics.json": "from an earlier run",
        "report.md": "from an earlier run",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def merchant_gain(history: pd.DataFrame, out: Path, delay_days: float) -> dict[str, float]:
    config = BacktestConfig(
        train_days=TRAIN_DAYS, gap_days=GAP_DAYS, label_delay=delay_days * 86400, compare=False, nthread=1
    )
    run = run_backtest(history.copy(), source="tiny", out=out, config=config)
    gain: dict[str, float] = run.metrics["model"]["merchant_gain"]
    return gain


def test_the_label_delay_decides_what_merchant_risk_the_model_sees(history, tmp_path):
    # Labels back at once: the label features vary and the model uses them. Never back within the
    # file: every label feature is that of a merchant without labels, constant, never split on (the
    # merchants' payments, known without labels, still count).
    now = merchant_gain(history, tmp_path / "now", 0)
    assert sum(now[name] for name in LABEL_FEATURES) > 0
    never = merchant_gain(history, tmp_path / "never", 3650)
    assert set(never) == set(MERCHANT_FEATURES)
    assert {name: never[name] for name in LABEL_FEATURES} == dict.fromkeys(LABEL_FEATURES, 0.0)


def test_csv_output_and_no_comparison(history_file, tmp_path):
    out = tmp_path / "out"
    assert main(["backtest", str(history_file), *ARGS, "--no-compare", "--csv", "--out", str(out)]) == 0
    scores = pd.read_csv(out / "scores.csv")
    assert "score_without_merchant_risk" not in scores.columns
    assert list(json.loads((out / "metrics.json").read_text())["models"]) == [
        "with_merchant_risk",
        "baseline",
    ]


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["backtest", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--train-days",
        "--gap-days",
        "--test-days",
        "--label-delay-days",
        "--top-k",
        "--out",
        "--no-compare",
        "--csv",
        "--seed",
    ):
        assert option in text
