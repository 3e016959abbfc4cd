"""The batch's EMF metrics: every decision's value is emitted, within CloudWatch's 100 values a metric."""

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.exceptions import SchemaValidationError

from fraudwatch.domain.decision import Decision, DecisionRecord, ShadowVerdict, Thresholds
from fraudwatch.domain.records import StreamRecord
from fraudwatch.domain.scoring import BatchReport
from fraudwatch.observability import MAX_EMF_VALUES, metrics, record_batch

THRESHOLDS = Thresholds(flag=0.5, reject=0.9)


def decision(i: int) -> DecisionRecord:
    score = (i % 97) / 97
    return DecisionRecord(
        f"tx-{i}",
        f"user-{i % 7}",
        "m-1",
        10.0 + i,
        "USD",
        "2026-12-06T02:00:00+00:00",
        THRESHOLDS.decide(score),
        score,
        "model-7",
        THRESHOLDS,
        "2026-12-06T02:00:01+00:00",
    )


def emitted(out: str) -> list[dict[str, Any]]:
    documents = (json.loads(line) for line in out.splitlines() if line.startswith("{"))
    return [d for d in documents if "_aws" in d]


@pytest.mark.parametrize("size", [1, 100, 101, 250])
def test_every_score_and_latency_is_emitted_in_documents_of_at_most_100_values(
    size: int, capsys: pytest.CaptureFixture[str]
) -> None:
    decisions = [decision(i) for i in range(size)]
    latencies = [float(i) + 0.5 for i in range(size - 1)]  # one old arrival: no latency
    record_batch(BatchReport(decisions=decisions, latencies_ms=latencies), model_version="model-7")
    metrics.flush_metrics()
    documents = emitted(capsys.readouterr().out)

    assert [v for d in documents for v in d.get("Score", [])] == [d.score for d in decisions]
    assert [v for d in documents for v in d.get("DecisionLatency", [])] == latencies
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "Fraudwatch"
        assert directive["Dimensions"] == [["service"]]
        assert document["service"] == "fraudwatch"
        assert document["model_version"] == "model-7"
        units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
        for name in ("Score", "DecisionLatency"):
            if name in document:
                assert 1 <= len(document[name]) <= MAX_EMF_VALUES
                assert units[name] == ("None" if name == "Score" else "Milliseconds")
    (counts,) = [d for d in documents if "Scored" in d]
    kinds = {kind: sum(d.decision is kind for d in decisions) for kind in Decision}
    assert counts["Scored"] == [size]
    assert [counts[kind.value.capitalize()] for kind in Decision] == [[kinds[kind]] for kind in Decision]


def test_a_batch_without_decisions_emits_no_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    record_batch(BatchReport(), model_version="model-7")
    metrics.flush_metrics()
    (document,) = emitted(capsys.readouterr().out)
    assert "Score" not in document
    assert "DecisionLatency" not in document
    assert document["Scored"] == [0]


def test_the_metric_set_is_the_one_powertools_add_metric_makes_value_by_value() -> None:
    """`add_distribution` makes its entries itself: the same names, units, resolution and values as
    `add_metric` called for each value in turn, over two batches before a flush."""
    shadow = ShadowVerdict("model-8", 0.25, Decision.APPROVED)
    decisions = [decision(i)._replace(challenger=shadow if i % 2 else None) for i in range(30)]
    failed = [StreamRecord("shardId-0", "7", b"{}", 1.0)]
    reports = [
        BatchReport(decisions=decisions, latencies_ms=[1.5] * 30, labels=2, duplicates=1, misrouted=3),
        BatchReport(decisions=decisions[:4], failed=failed),
    ]
    powertools = EphemeralMetrics(namespace="Fraudwatch", service="fraudwatch")
    for report in reports:
        record_batch(report, model_version="model-7")
        kinds = [d.decision for d in report.decisions]
        per_decision = {
            ("Score", MetricUnit.NoUnit): [d.score for d in report.decisions],
            ("ChallengerScore", MetricUnit.NoUnit): [
                d.challenger.score for d in report.decisions if d.challenger is not None
            ],
            ("DecisionLatency", MetricUnit.Milliseconds): report.latencies_ms,
        }
        for (name, unit), values in per_decision.items():
            for value in values:
                powertools.add_metric(name=name, unit=unit, value=value)
        counts = {
            "Scored": len(report.decisions),
            **{kind.value.capitalize(): kinds.count(kind) for kind in Decision},
            "Quarantined": len(report.quarantined),
            "Labels": report.labels,
            "Duplicates": report.duplicates,
            "Misrouted": report.misrouted,
            "RetriedRecords": len(report.failed),
        }
        for name, count in counts.items():
            powertools.add_metric(name=name, unit=MetricUnit.Count, value=count)
    try:
        assert metrics.metric_set == powertools.metric_set
        assert list(metrics.metric_set) == list(powertools.metric_set)
    finally:
        metrics.clear_metrics()


def test_a_flush_prints_the_document_powertools_serializes_once_then_clears_the_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The printing is orjson's, the document Powertools': the same keys and values, on one line."""
    record_batch(
        BatchReport(decisions=[decision(i) for i in range(3)], latencies_ms=[0.1, 1e-5, 2.5e3]), "model-7"
    )
    expected = json.loads(json.dumps(metrics.serialize_metric_set()))
    metrics.flush_metrics()
    (document,) = emitted(capsys.readouterr().out)
    assert document["_aws"].pop("Timestamp") - expected["_aws"].pop("Timestamp") in range(0, 1000)
    assert document == expected
    assert document["DecisionLatency"] == [0.1, 1e-5, 2.5e3]
    assert (metrics.metric_set, metrics.metadata_set) == ({}, {})


def test_a_flush_with_nothing_to_print_does_what_powertools_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.warns(UserWarning, match="No application metrics to publish"):
        metrics.flush_metrics()
    with pytest.raises(SchemaValidationError):
        metrics.flush_metrics(raise_on_empty_metrics=True)
    assert capsys.readouterr().out == ""


def test_with_metrics_disabled_a_flush_prints_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    record_batch(BatchReport(decisions=[decision(1)], latencies_ms=[1.0]), model_version="model-7")
    try:
        metrics.flush_metrics()
        assert capsys.readouterr().out == ""
    finally:
        metrics.clear_metrics()


TRACING_PROBE = """
import sys
from fraudwatch.observability import traced
def handler(event, context):
    return event
wrapped = traced(handler)
print(wrapped is handler, "aws_xray_sdk.core" in sys.modules)
"""


@pytest.mark.parametrize(("disabled", "expected"), [("true", "True False"), ("false", "False True")])
def test_the_handler_is_traced_only_when_tracing_is_on(disabled: str, expected: str) -> None:
    """Off (POWERTOOLS_TRACE_DISABLED): the handler as it is, and the X-Ray SDK never imported."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "AWS_"))},
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_LAMBDA_FUNCTION_NAME": "fraudwatch-scoring",
        "POWERTOOLS_TRACE_DISABLED": disabled,
    }
    done = subprocess.run(
        [sys.executable, "-c", TRACING_PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split("\n")[0] == expected


EMPTY_FLUSH_PROBE = """
from fraudwatch.observability import metrics
@metrics.log_metrics
def handler(event, context):
    return "answered"
print(handler({}, None))
"""


def test_a_request_with_no_metric_to_publish_prints_no_warning() -> None:
    """A GET, a refusal, a transaction decided before: nothing to publish, and nothing said of it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "PYTHONWARNINGS"))}
    done = subprocess.run(
        [sys.executable, "-c", EMPTY_FLUSH_PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert (done.stdout, done.stderr) == ("answered\n", "")
