"""The training job end to end on a tiny history: bundle round trip, report, and offline scoring."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from fraudwatch.adapters.bundle import COMPILED_FILES, read_bundle
from fraudwatch.adapters.model import load_model
from fraudwatch.domain.features import FEATURE_NAMES
from infra.cli import main
from tests.fakes import tiny_history
from training import bundle as bundle_module
from training import pipeline
from training.bundle import write_bundle
from training.evaluate import PLOTS, evaluate
from training.features import compute_features
from training.fit import thresholds_file
from training.train import predict


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return tiny_history(transactions=4000, users=50, days=20, seed=8)


@pytest.fixture(scope="module")
def trained(history, tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    run = pipeline.run_training(
        history.copy(), source="tiny", bundle_dir=root / "bundle", reports_dir=root / "reports", nthread=1
    )
    return run, root


def test_the_bundle_loads_and_scores_exactly_as_trained(trained, history):
    run, root = trained
    model = load_model(root / "bundle")
    assert model.version == run.version
    assert model.feature_names == FEATURE_NAMES
    assert (model.thresholds.flag, model.thresholds.reject) == (
        run.thresholds.flag.threshold,
        run.thresholds.reject.threshold,
    )
    values = compute_features(history.copy()).values
    assert model.scorer == "compiled"
    np.testing.assert_allclose(model.score(values.tolist()), predict(run.model.booster, values), atol=1e-6)
    booster = load_model(root / "bundle", compiled=False)
    assert booster.score(values.tolist()) == predict(run.model.booster, values).tolist()


def test_the_bundle_files_follow_the_contract(trained):
    run, root = trained
    bundle = root / "bundle"
    assert sorted(p.name for p in bundle.iterdir()) == [
        "compiled.json",
        "features.json",
        "model.so",
        "model.ubj",
        "model_card.json",
        "model_card.md",
        "thresholds.json",
    ]
    assert json.loads((bundle / "features.json").read_text()) == {"feature_names": list(FEATURE_NAMES)}
    thresholds = json.loads((bundle / "thresholds.json").read_text())
    assert 0 <= thresholds["flag"] <= thresholds["reject"] <= 1
    assert thresholds["targets"]["reject_precision"] == 0.95
    card = json.loads((bundle / "model_card.json").read_text())
    assert card["version"] == run.version
    assert card["data"]["rows"] == 4000
    assert set(card["data"]["periods"]) == {"training", "validation", "test"}
    assert card["selection"]["chosen"] in {c["name"] for c in card["selection"]["candidates"]}
    assert set(card["libraries"]) == {"xgboost", "numpy", "python"}
    assert card["metrics"]["test"]["roc_auc"] > 0.8  # the tiny history's fraud is easy to see
    assert run.version in (bundle / "model_card.md").read_text()


def test_the_card_holds_the_reference_distribution_the_lambda_measures_drift_against(trained):
    _, root = trained
    reference = read_bundle(root / "bundle").reference
    assert reference is not None
    np.testing.assert_allclose(reference.shares.sum(axis=1), 1.0)
    assert len(reference.top_features) == 5
    assert set(reference.top_features) <= set(FEATURE_NAMES)


def test_the_report_has_its_metrics_and_plots(trained):
    run, root = trained
    directory = root / "reports" / run.version
    assert run.report == directory / "report.md"
    text = run.report.read_text()
    for heading in ("ROC AUC", "average precision", "Decisions against truth", "Recall per fraud pattern"):
        assert heading in text
    for plot in PLOTS:
        assert (directory / plot).stat().st_size > 1000
    metrics = json.loads((directory / "metrics.json").read_text())
    confusion = metrics["confusion"]
    assert sum(c["fraud"] + c["legitimate"] for c in confusion.values()) == metrics["transactions"]


def test_rewriting_a_bundle_replaces_it_whole_and_leaves_no_temporary_directories(trained, tmp_path):
    run, _ = trained
    bundle = tmp_path / "bundle"
    (bundle).mkdir()
    (bundle / "stale.txt").write_text("from an older bundle")
    write_bundle(bundle, run.model.booster, thresholds_file(run.thresholds), run.card)
    assert not (bundle / "stale.txt").exists()
    assert load_model(bundle).version == run.version
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_without_a_compiler_the_bundle_is_written_without_its_compiled_model_and_says_so(
    trained, tmp_path, monkeypatch, caplog
):
    run, _ = trained
    monkeypatch.setattr(bundle_module, "TOOLCHAIN", "no-such-cc")
    with caplog.at_level(logging.WARNING, logger="training.bundle"):
        bundle = write_bundle(
            tmp_path / "bundle", run.model.booster, thresholds_file(run.thresholds), run.card
        )
    assert not any((bundle / name).exists() for name in COMPILED_FILES)
    assert "no no-such-cc on the PATH" in caplog.text
    assert load_model(bundle).scorer == "xgboost"


def test_a_failed_bundle_write_leaves_the_old_bundle(trained, tmp_path):
    run, _ = trained
    bundle = tmp_path / "bundle"
    write_bundle(bundle, run.model.booster, thresholds_file(run.thresholds), run.card)
    broken_card = {**run.card, "metrics": {}}  # the card cannot be rendered
    with pytest.raises(KeyError):
        write_bundle(bundle, run.model.booster, thresholds_file(run.thresholds), broken_card)
    assert load_model(bundle).version == run.version
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_score_file_scores_every_transaction_in_time_order(trained, history, tmp_path, capsys):
    _, root = trained
    data = tmp_path / "in.csv"
    unlabelled = history.drop(columns=["is_fraud", "fraud_pattern"])
    unlabelled.iloc[::-1].to_csv(data, index=False)
    out = tmp_path / "scores.parquet"
    assert main(["score-file", "--data", str(data), "--out", str(out), "--bundle", str(root / "bundle")]) == 0
    scored = pd.read_parquet(out)
    model = load_model(root / "bundle")
    assert list(scored.columns) == ["transaction_id", "timestamp", "score", "decision"]
    assert scored["transaction_id"].tolist() == history["transaction_id"].tolist()
    # No labels in the file, so no merchant risk: the same features as the unlabelled history's.
    expected = model.score(compute_features(unlabelled.copy()).values.tolist())
    assert scored["score"].tolist() == expected
    assert scored["decision"].tolist() == [model.thresholds.decide(s).value for s in expected]
    assert "scored 4,000 transactions" in capsys.readouterr().out


def test_score_file_without_a_bundle_fails_in_one_line(history, tmp_path, capsys):
    data = tmp_path / "in.csv"
    history.to_csv(data, index=False)
    out = tmp_path / "o.csv"
    status = main(["score-file", "--data", str(data), "--out", str(out), "--bundle", str(tmp_path / "none")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2  # the bundle it was given cannot be used: a usage error
    assert len(err) == 1
    assert err[0].startswith("fraudwatch score-file: error: ")
    assert "missing model.ubj" in err[0]
    assert not out.exists()


def test_score_file_refuses_an_output_it_cannot_write_before_reading_or_scoring_anything(tmp_path, capsys):
    out = tmp_path / "scores.txt"
    argv = ["score-file", "--data", str(tmp_path / "none.csv"), "--out", str(out), "--bundle", str(tmp_path)]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"fraudwatch score-file: error: --out {out}: use a .parquet or .csv file"
    )


def test_evaluation_without_patterns_counts_all_fraud_as_one(trained, history):
    run, _ = trained
    values = compute_features(history.copy()).values
    labels = history["is_fraud"].to_numpy()
    scores = predict(run.model.booster, values)
    result = evaluate(run.model.booster, scores, labels, None, run.thresholds)
    assert [(p.pattern, p.transactions) for p in result.patterns] == [("fraud", int(labels.sum()))]
    assert result.patterns[0].flagged_or_rejected == float(
        (scores[labels] >= run.thresholds.flag.threshold).mean()
    )


def test_train_command_generates_history_and_prints_a_summary(tmp_path, capsys):
    bundle, reports = tmp_path / "bundle", tmp_path / "reports"
    argv = ["train", "--transactions", "6000", "--days", "20", "--seed", "3", "--threads", "1"]
    assert main([*argv, "--bundle", str(bundle), "--reports", str(reports)]) == 0
    out = capsys.readouterr().out
    version = load_model(bundle).version
    assert f"model {version} trained" in out
    for line in ("[1/5] generating 6,000 transactions", "ROC AUC", "FLAGGED  >=", "REJECTED >=", "report:"):
        assert line in out
    card = json.loads((bundle / "model_card.json").read_text())
    assert card["data"]["source"] == "generated: 6,000 transactions, 20 days, seed 3"
    assert card["data"]["rows"] == 6000
    assert (reports / version / "report.md").is_file()
