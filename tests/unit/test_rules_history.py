"""`fraudwatch rules test`: a rules document replayed on a labelled history, beside the model alone."""

import json
from pathlib import Path

import pandas as pd
import pytest

from fraudwatch.adapters.model import load_model
from fraudwatch.domain.decision import Decision
from fraudwatch.domain.lists import ListEntry, ListSnapshot
from fraudwatch.domain.rules import compile_rules
from infra.cli import main
from infra.rules_history import rules_on_history
from tests.fakes import tiny_history
from training.score import score_frame

RULES = {
    "version": "history-1",
    "rules": [
        {"id": "big", "description": "big payments", "condition": "tx.amount > 300.0", "action": "block"},
        {
            "id": "night",
            "description": "at night",
            "condition": "features.is_night > 0.5",
            "action": "review",
        },
        {"id": "never", "description": "fires on nothing", "condition": "tx.amount < 0.0", "action": "allow"},
    ],
}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    frame = tiny_history(transactions=2000, users=30, days=10, seed=3)
    path = tmp_path_factory.mktemp("history") / "history.parquet"
    frame.to_parquet(path)
    return path, frame


def test_each_rule_fires_where_its_condition_holds_with_its_precision(history, tiny_bundle):
    path, frame = history
    report = rules_on_history(compile_rules(RULES), path, bundle=tiny_bundle, label_delay=86400.0)
    big = frame[frame["amount"] > 300.0]
    assert report.transactions == len(frame)
    assert report.frauds == int(frame["is_fraud"].sum())
    assert report.rules["rule:big"].fires == len(big)
    assert report.rules["rule:big"].frauds == int(big["is_fraud"].sum())
    assert report.rules["rule:never"].fires == 0
    assert report.rules["rule:never"].precision() is None
    assert 0 < report.rules["rule:big"].fires < len(frame), "the history must exercise the rule both ways"


def test_the_model_alone_column_is_what_score_file_decides(history, tiny_bundle):
    path, frame = history
    report = rules_on_history(compile_rules(RULES), path, bundle=tiny_bundle, label_delay=86400.0)
    scored = score_frame(frame, load_model(tiny_bundle), source="history", label_delay=86400.0)
    assert {d.value: n for d, n in report.model.items()} == scored["decision"].value_counts().to_dict()
    assert sum(report.with_rules.values()) == len(frame)
    assert report.with_rules[Decision.REJECTED] >= report.rules["rule:big"].fires


def test_a_blocked_list_counts_beside_the_rules(history, tiny_bundle):
    path, frame = history
    merchant = frame["merchant_id"].value_counts().index[0]
    lists = ListSnapshot.of([ListEntry("blocked_merchants", merchant, "me", "test", 0.0)], 1.0)
    report = rules_on_history(
        compile_rules(RULES), path, bundle=tiny_bundle, lists=lists, label_delay=86400.0
    )
    assert report.rules["list:blocked_merchants"].fires == int((frame["merchant_id"] == merchant).sum())


def test_the_command_prints_the_table_and_the_mix_side_by_side(history, tiny_bundle, tmp_path, capsys):
    path, _ = history
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    assert main(["rules", "test", str(rules), "--history", str(path), "--bundle", str(tiny_bundle)]) == 0
    out = capsys.readouterr().out
    assert "| rule:big | block |" in out
    assert "| decisions | model alone | with the rules |" in out
    assert "| genuine payments rejected |" in out


def test_the_command_refuses_an_unlabelled_history(history, tiny_bundle, tmp_path, capsys):
    _, frame = history
    unlabelled = tmp_path / "unlabelled.parquet"
    frame.drop(columns=["is_fraud"]).to_parquet(unlabelled)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    assert (
        main(["rules", "test", str(rules), "--history", str(unlabelled), "--bundle", str(tiny_bundle)]) == 2
    )
    assert capsys.readouterr().err.startswith("fraudwatch rules test: error: ")
