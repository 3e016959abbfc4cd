"""Training's pieces: the time split, threshold selection, and reading labelled files."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from fraudwatch.domain.features import FEATURE_NAMES
from infra.cli import main
from tests.fakes import tiny_history
from training.features import compute_features
from training.io import DataFileError, read_transactions
from training.train import ThresholdTargets, TrainingError, choose_thresholds, operating_points, time_split

# --- time split


def test_time_split_puts_earliest_in_training_and_latest_in_test():
    rng = np.random.default_rng(0)
    epochs = rng.uniform(0, 1_000_000, 2000)
    split = time_split(epochs)
    assert not (split.train & split.validation).any()
    assert not (split.validation & split.test).any()
    assert (split.train | split.validation | split.test).all()
    assert epochs[split.train].max() < epochs[split.validation].min()
    assert epochs[split.validation].max() < epochs[split.test].min()
    assert split.train.sum() == 1400
    assert split.validation.sum() == 300


def test_time_split_refuses_too_little_data():
    with pytest.raises(TrainingError, match="period is empty"):
        time_split(np.array([5.0, 5.0, 5.0]))


# --- thresholds


def scored_validation() -> tuple[np.ndarray, np.ndarray]:
    """1000 scores, 50 fraud: 30 fraud (+1 legit at 0.95) on top, 10 fraud interleaved with 10 legit
    in 0.70-0.795, and 10 fraud hidden among 939 legit below 0.5."""
    rng = np.random.default_rng(1)
    top = [0.9 + 0.003 * i for i in range(30)]
    middle_fraud = [0.70 + 0.01 * i for i in range(10)]
    middle_legit = [0.705 + 0.01 * i for i in range(10)]
    hidden = [0.3 + 0.01 * i for i in range(10)]
    low = rng.uniform(0, 0.5, 939).tolist()
    scores = np.array([*top, 0.95, *middle_fraud, *middle_legit, *hidden, *low])
    labels = np.array([True] * 30 + [False] + [True] * 10 + [False] * 10 + [True] * 10 + [False] * 939)
    return scores, labels


def test_operating_points_alert_on_scores_at_or_above_each_threshold():
    points = operating_points(np.array([0.9, 0.5, 0.5, 0.1]), np.array([True, True, False, False]))
    assert [p.threshold for p in points] == [0.9, 0.5, 0.1]
    assert [p.alerts for p in points] == [1, 3, 4]  # a tie is alerted on as a whole
    assert [p.precision for p in points] == [1.0, 2 / 3, 0.5]
    assert [p.recall for p in points] == [0.5, 1.0, 1.0]


def test_reject_is_the_lowest_threshold_reaching_the_precision_target():
    scores, labels = scored_validation()
    choice = choose_thresholds(scores, labels, ThresholdTargets(review_budget=0.10))
    # At 0.900: 30 fraud + 1 legit alerted, precision 0.968; one step lower it drops to 30/32.
    assert choice.reject.threshold == pytest.approx(0.9)
    assert choice.reject.precision == pytest.approx(30 / 31)
    assert choice.reject.recall == pytest.approx(30 / 50)


def test_flag_is_the_highest_threshold_reaching_the_recall_target():
    scores, labels = scored_validation()
    choice = choose_thresholds(scores, labels, ThresholdTargets(flag_recall=0.80, review_budget=0.10))
    # Recall 0.80 needs 40 of the 50 frauds: down to the lowest of the interleaved ones, 0.70.
    assert choice.flag.threshold == pytest.approx(0.70)
    assert choice.flag.recall == pytest.approx(0.80)
    assert choice.flag.alerts == 51
    assert choice.notes == ()


def test_the_review_budget_caps_flagging_and_says_so():
    scores, labels = scored_validation()
    choice = choose_thresholds(scores, labels, ThresholdTargets(flag_recall=0.80, review_budget=0.04))
    # At most 40 alerts: the 40th highest score is the legit 0.755.
    assert choice.flag.threshold == pytest.approx(0.755)
    assert choice.flag.alerts == 40
    assert choice.flag.recall == pytest.approx(34 / 50)
    assert any("review budget" in note for note in choice.notes)


def test_flag_never_exceeds_reject():
    scores, labels = scored_validation()
    choice = choose_thresholds(scores, labels, ThresholdTargets(review_budget=0.02))
    assert choice.flag.threshold == choice.reject.threshold
    assert any("lowered" in note for note in choice.notes)


def test_an_unreachable_precision_target_falls_back_to_the_best_precision_and_says_so():
    rng = np.random.default_rng(2)
    scores = rng.uniform(0, 1, 2000)
    labels = rng.random(2000) < 0.05  # scores carry no signal
    choice = choose_thresholds(scores, labels)
    assert choice.reject.precision < 0.95
    assert choice.reject.alerts >= 10
    best = max(p.precision for p in operating_points(scores, labels) if p.alerts >= 10)
    assert choice.reject.precision == best
    assert any("precision target" in note for note in choice.notes)
    assert choice.flag.threshold <= choice.reject.threshold


def test_thresholds_need_fraud_in_validation():
    with pytest.raises(TrainingError, match="no fraud"):
        choose_thresholds(np.array([0.1, 0.2]), np.array([False, False]))


# --- reading labelled files


@pytest.fixture
def history() -> pd.DataFrame:
    return tiny_history(transactions=200, users=8, seed=4)


def write(frame: pd.DataFrame, path):
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_labelled_file_reads_back_as_written(history, tmp_path, suffix):
    frame = read_transactions(write(history, tmp_path / f"h{suffix}"), labelled=True)
    assert frame["is_fraud"].dtype == bool
    assert frame["amount"].tolist() == history["amount"].tolist()
    assert frame["timestamp"].tolist() == history["timestamp"].tolist()
    assert compute_features(frame, check=False).values.shape == (200, len(FEATURE_NAMES))


def test_text_ids_that_look_like_numbers_stay_text(history, tmp_path):
    history["user_id"] = "007"
    frame = read_transactions(write(history, tmp_path / "h.csv"), labelled=True)
    assert set(frame["user_id"]) == {"007"}


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("amount", "abc", "column 'amount', row 4: 'abc' is not a number"),
        ("amount", "-3", "column 'amount', row 4: -3.0 must not be negative"),
        ("currency", "XXX", "column 'currency', row 4: 'XXX' is not a supported ISO 4217 code"),
        ("user_id", "bad id", "column 'user_id', row 4: 'bad id' is not an id: a space at position 3"),
        ("category", "Food", "column 'category', row 4: 'Food' must be 1-32 lowercase"),
        ("is_fraud", "maybe", "column 'is_fraud', row 4: 'maybe' is not a boolean"),
    ],
)
def test_a_malformed_value_is_named_with_its_column_and_row(history, tmp_path, column, value, message):
    history[column] = history[column].astype(object)
    history.loc[3, column] = value
    with pytest.raises(DataFileError, match=re.escape(message)):
        read_transactions(write(history, tmp_path / "bad.csv"), labelled=True)


def test_a_repeated_transaction_id_is_named(history, tmp_path):
    history.loc[5, "transaction_id"] = history.loc[2, "transaction_id"]
    message = f"column 'transaction_id', row 6: {history.loc[2, 'transaction_id']!r} appears twice"
    with pytest.raises(DataFileError, match=re.escape(message)):
        read_transactions(write(history, tmp_path / "bad.parquet"), labelled=True)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-13-01T00:00:00+00:00", "not an ISO 8601 date-time"),
        ("2026-01-01T00:00:00", "needs a UTC offset"),
        ("yesterday", "not an ISO 8601 date-time"),
    ],
)
def test_a_bad_timestamp_is_named_with_its_row(history, tmp_path, value, reason):
    history.loc[6, "timestamp"] = value
    frame = read_transactions(write(history, tmp_path / "bad.csv"), labelled=True)
    with pytest.raises(DataFileError, match=re.escape(f"column 'timestamp', row 7: '{value}' {reason}")):
        compute_features(frame, source="bad.csv", check=False)


def test_a_missing_column_is_named(history, tmp_path):
    path = write(history.drop(columns=["amount"]), tmp_path / "h.parquet")
    with pytest.raises(DataFileError, match="missing column 'amount'"):
        read_transactions(path, labelled=True)


def test_labels_are_required_for_training_only(history, tmp_path):
    path = write(history.drop(columns=["is_fraud"]), tmp_path / "h.csv")
    with pytest.raises(DataFileError, match="missing column 'is_fraud'"):
        read_transactions(path, labelled=True)
    assert len(read_transactions(path, labelled=False)) == 200


def test_an_unreadable_file_is_named(tmp_path):
    path = tmp_path / "h.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataFileError, match=f"{re.escape(str(path))}: cannot read"):
        read_transactions(path, labelled=True)


def test_unsupported_and_absent_files_are_named(tmp_path):
    with pytest.raises(DataFileError, match=r"unsupported file type '\.json'"):
        read_transactions(tmp_path / "h.json", labelled=True)
    with pytest.raises(DataFileError, match="no such file"):
        read_transactions(tmp_path / "absent.csv", labelled=True)


def test_train_command_reports_a_bad_file_in_one_line_and_writes_nothing(history, tmp_path, capsys):
    history["amount"] = history["amount"].astype(object)
    history.loc[9, "amount"] = "ten"
    path = write(history, tmp_path / "bad.csv")
    bundle = tmp_path / "bundle"
    status = main(["train", "--data", str(path), "--bundle", str(bundle), "--reports", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert status == 2  # the input's fault: a usage error
    assert err == f"fraudwatch train: error: {path}: column 'amount', row 10: 'ten' is not a number"
    assert not bundle.exists()
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h.assign(is_fraud=False), "the training period has no fraud"),
        (lambda h: h.iloc[:2], "period is empty"),
    ],
)
def test_train_command_explains_data_that_cannot_train_a_model(history, tmp_path, capsys, change, message):
    path = write(change(history), tmp_path / "h.parquet")
    status = main(
        ["train", "--data", str(path), "--bundle", str(tmp_path / "b"), "--reports", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]  # after the progress bars
    assert last.startswith("fraudwatch train: error: ")
    assert message in last
    assert not (tmp_path / "b").exists()
