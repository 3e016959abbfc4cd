"""The main job end to end (`fraudwatch demo`), small: N transactions in, N decisions and the report out."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from infra.stack import DemoReport, StackError, percentiles, run_demo

pytestmark = pytest.mark.e2e

TRANSACTIONS = 300


@pytest.fixture(scope="module")
def report(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoReport:
    """One small demo run on its own emulator, with the tests' tiny model."""
    before = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    result = run_demo(
        transactions=TRANSACTIONS,
        rate=None,
        seed=11,
        timeout_s=120,
        stack_name="fraudwatch-demo-test",
        bundle_dir=tiny_bundle,
        handler_log=tmp_path_factory.mktemp("demo") / "handler.log",
    )
    after = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    assert after == before, "the demo points only itself at the emulator, never what runs after it"
    assert "DECISIONS_TABLE" not in os.environ
    return result


def test_every_transaction_gets_exactly_one_decision(report: DemoReport) -> None:
    assert report.transactions == TRANSACTIONS
    assert sum(report.decisions.values()) == TRANSACTIONS
    assert set(report.decisions) <= {"APPROVED", "FLAGGED", "REJECTED"}
    assert report.quarantined == 0
    assert report.on_failure == 0
    assert report.runner["errors"] == 0


def test_alerts_on_the_subscription_match_flagged_and_rejected(report: DemoReport) -> None:
    expected = {k: v for k, v in report.decisions.items() if k != "APPROVED"}
    assert report.alerts == expected


def test_precision_and_recall_add_up_to_the_truth(report: DemoReport) -> None:
    flagged = report.decisions.get("FLAGGED", 0) + report.decisions.get("REJECTED", 0)
    assert report.true_positives + report.false_positives == flagged
    frauds = sum(int(n.split("/")[1]) for n in report.recall_by_pattern.values())
    assert report.true_positives + report.false_negatives == frauds
    assert 0.0 <= report.precision <= 1.0
    assert 0.0 <= report.recall <= 1.0


def test_latency_and_throughput_are_measured(report: DemoReport) -> None:
    latency = report.latency_ms
    assert 0 <= latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert report.end_to_end_seconds > 0
    assert report.throughput > 0
    text = report.text()
    assert "p99" in text
    assert "precision" in text


def test_a_broken_bundle_fails_naming_the_step(tiny_bundle: Path, tmp_path: Path) -> None:
    broken = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, broken)
    (broken / "model.ubj").write_bytes(b"not a model")
    with pytest.raises(StackError, match="model bundle"):
        run_demo(
            transactions=10,
            rate=None,
            seed=11,
            timeout_s=30,
            stack_name="fraudwatch-demo-broken",
            bundle_dir=broken,
            handler_log=tmp_path / "handler.log",
        )


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
    assert percentiles([]) == {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
