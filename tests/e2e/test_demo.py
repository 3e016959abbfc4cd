"""The main job end to end (`fraudwatch demo`), small: N transactions in, N decisions and the report out."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace

import pytest

from fraudwatch.adapters.bundle import MODEL_FILE, THRESHOLDS_FILE
from fraudwatch.adapters.cases import DynamoCaseStore
from fraudwatch.domain.cases import QueueFilter
from infra.demo import run_demo, wait_for_decisions
from infra.demo_report import PATTERN_NOTES, DemoReport, percentiles, read_decisions
from infra.embedded import RunningHandler, StackError
from infra.emulator import Emulator, client
from infra.runner import RunnerStats
from training.population.patterns import FRAUD_PATTERNS

pytestmark = pytest.mark.e2e

TRANSACTIONS = 300


REVIEWED: dict[str, set[str]] = {}
"""What the demo left for the analysts, seen while its stack was still up (`review`)."""


def review(endpoint_url: str, outputs: Mapping[str, str], report: DemoReport) -> None:
    """Stands in for the console (`serve_console`): the FLAGGED decisions, and the open cases, once every
    FLAGGED one has opened its case (the cases function runs behind its queue's runner)."""
    flagged = {
        tx
        for tx, decision in read_decisions(
            client("dynamodb", endpoint_url), outputs["DecisionsTableName"]
        ).items()
        if decision["decision"] == "FLAGGED"
    }
    cases = DynamoCaseStore(outputs["CasesTableName"], client("dynamodb", endpoint_url))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        opened = {case.case_id for case in cases.queue(QueueFilter(), 100, None).cases}
        if flagged <= opened:
            break
        time.sleep(0.5)
    REVIEWED.update(flagged=flagged, opened=opened)


@pytest.fixture(scope="module")
def report(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoReport:
    """One small demo run on its own emulator, with the tests' tiny model, reviewed as `make demo` is.

    The tiny model's scores of alerted payments sit near 1, over its reject threshold: here it rejects
    only from 0.9999, so that most alerts are FLAGGED and open review cases."""
    bundle = tmp_path_factory.mktemp("demo-bundle")
    shutil.copytree(tiny_bundle, bundle, dirs_exist_ok=True)
    (bundle / THRESHOLDS_FILE).write_text(json.dumps({"flag": 0.5, "reject": 0.9999}))
    before = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    result = run_demo(
        transactions=TRANSACTIONS,
        rate=None,
        seed=11,
        timeout_s=120,
        stack_name="fraudwatch-demo-test",
        bundle_dir=bundle,
        handler_log=tmp_path_factory.mktemp("demo") / "handler.log",
        alerts_log=tmp_path_factory.mktemp("alerts") / "alerts.log",
        review=review,
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


def test_alerts_on_the_subscription_match_flagged_and_rejected_and_are_logged_once(
    report: DemoReport,
) -> None:
    expected = {k: v for k, v in report.decisions.items() if k != "APPROVED"}
    assert report.alerts == expected
    logged = [json.loads(line) for line in Path(report.alerts_log).read_text().splitlines()]
    assert len(logged) == sum(expected.values())
    assert len({alert["transaction_id"] for alert in logged}) == len(logged)
    assert f"appended to {report.alerts_log}" in report.text()


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
    parts = report.latency_parts_ms
    assert set(parts) == {"on the stream until read", "batching window", "handler"}
    assert all(0 <= p["p50"] <= p["p99"] <= p["max"] for p in parts.values())
    assert parts["handler"]["max"] > 0  # every record waited for its batch's invocation
    assert "where it goes" in report.text()
    assert report.end_to_end_seconds > 0
    assert report.throughput > 0
    text = report.text()
    assert "p99" in text
    assert "precision" in text


def test_the_demo_leaves_a_review_case_open_for_every_flagged_payment(report: DemoReport) -> None:
    assert REVIEWED["flagged"], "the run flags some payments"
    assert REVIEWED["opened"] == REVIEWED["flagged"]  # FLAGGED ones only (REJECTED are not reviewed)


def test_every_other_transaction_is_labelled_and_counted_once_in_its_merchants_profile(
    report: DemoReport,
) -> None:
    """The FLAGGED payments' labels are left to the analysts' verdicts; every other one is put."""
    left = len(REVIEWED["flagged"] - {p["transaction_id"] for p in report.api})
    assert report.labels["put"] == TRANSACTIONS - left
    assert report.labels["fraud"] <= sum(int(n.split("/")[1]) for n in report.recall_by_pattern.values())
    assert report.labels["counted"] == TRANSACTIONS - left  # each once, none lost or counted twice
    assert 0 < report.labels["merchants"] < TRANSACTIONS
    assert f"{TRANSACTIONS - left:,} of this run's transactions labelled on the stream" in report.text()
    assert report.to_dict()["labels"] == report.labels


def test_users_and_merchants_start_from_the_history_and_the_report_says_so(report: DemoReport) -> None:
    seeded = report.seeded
    assert seeded["users"] > 0
    assert seeded["merchants"] > 0  # the fraud labels known by the history's end: merchant risk
    assert 0 < seeded["fraud_labels"] < seeded["labels"]
    assert f"{seeded['merchants']:,} merchants'" in report.text()
    assert "labels           " in report.text()
    assert report.to_dict()["seeded"] == seeded


def test_a_few_payments_are_decided_through_the_api_the_same_way_twice_and_reported(
    report: DemoReport,
) -> None:
    assert report.api
    assert all(p["same_again"] for p in report.api)
    assert {p["decision"] for p in report.api} <= {"APPROVED", "FLAGGED", "REJECTED"}
    assert all(0.0 <= p["score"] <= 1.0 for p in report.api)
    assert report.api[0]["transaction_id"] in report.text()
    assert report.transactions == TRANSACTIONS  # the API's payments come after, and count apart


def test_a_broken_bundle_fails_naming_the_step(tiny_bundle: Path, tmp_path: Path) -> None:
    broken = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, broken)
    (broken / MODEL_FILE).write_bytes(b"not a model")
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


@pytest.fixture
def bare_stack() -> Iterator[tuple[str, dict[str, str]]]:
    """A decisions table and the two queues on a fresh emulator: what the wait reads."""
    with Emulator() as emulator:
        emulator.client("dynamodb").create_table(
            TableName="decisions",
            KeySchema=[{"AttributeName": "transaction_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "transaction_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        sqs = emulator.client("sqs")
        outputs = {
            "DecisionsTableName": "decisions",
            "QuarantineQueueUrl": sqs.create_queue(QueueName="quarantine")["QueueUrl"],
            "OnFailureQueueUrl": sqs.create_queue(QueueName="on-failure")["QueueUrl"],
        }
        item = {"transaction_id": {"S": "tx-1"}, "decision": {"S": "APPROVED"}, "decided_at": {"S": "x"}}
        emulator.client("dynamodb").put_item(TableName="decisions", Item=item)
        yield emulator.endpoint_url, outputs


def _finished_runner(delivered: int) -> RunningHandler:
    runner = SimpleNamespace(stats=RunnerStats(records_delivered=delivered))
    return RunningHandler(runner=runner, stop=threading.Event(), thread=threading.Thread())


def test_a_missing_decision_times_out_naming_the_transaction(
    bare_stack: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    endpoint, outputs = bare_stack
    with pytest.raises(StackError, match=r"1 of 2 transactions have no decision .*e\.g\. tx-2"):
        wait_for_decisions(endpoint, outputs, ["tx-1", "tx-2"], _finished_runner(0), 0, tmp_path / "log")


def test_quarantined_transactions_fail_the_wait_at_once(bare_stack: tuple[str, dict[str, str]]) -> None:
    endpoint, outputs = bare_stack
    client("sqs", endpoint).send_message(
        QueueUrl=outputs["QuarantineQueueUrl"], MessageBody='{"field": "amount"}'
    )
    with pytest.raises(StackError, match=r"1 of 2 generated transactions were quarantined.*amount"):
        wait_for_decisions(endpoint, outputs, ["tx-1", "tx-2"], _finished_runner(2), 60)


def test_every_fraud_pattern_has_a_line_saying_why_it_is_caught_or_not(report: DemoReport) -> None:
    assert set(PATTERN_NOTES) == set(FRAUD_PATTERNS)
    for pattern, caught in report.recall_by_pattern.items():
        assert f"{caught}  {PATTERN_NOTES[pattern]}" in report.text()
