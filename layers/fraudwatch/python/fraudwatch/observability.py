"""Logging, metrics and tracing in one place (Powertools). Logs carry ids and counts, never card data."""

from __future__ import annotations

from collections import Counter

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit

from fraudwatch.domain.decision import Decision
from fraudwatch.domain.inline import InlineDecision
from fraudwatch.domain.scoring import BatchReport
from fraudwatch.errors import AwsCallError

logger = Logger(service="fraudwatch")
metrics = Metrics(namespace="Fraudwatch", service="fraudwatch")
tracer = Tracer(service="fraudwatch")


def record_batch(report: BatchReport, model_version: str) -> None:
    """Emit a batch's metrics (EMF) and one structured log line.

    The line is a warning when AWS calls failed, an error when one of them failed for good (access
    denied, a missing resource, a refused request, an unusable key): retrying will not mend that.
    """
    counts = {kind: 0 for kind in Decision}
    for decision in report.decisions:
        counts[decision.decision] += 1
        metrics.add_metric(name="Score", unit=MetricUnit.NoUnit, value=decision.score)
    for latency_ms in report.latencies_ms:
        metrics.add_metric(name="DecisionLatency", unit=MetricUnit.Milliseconds, value=latency_ms)
    metrics.add_metric(name="Scored", unit=MetricUnit.Count, value=len(report.decisions))
    for kind, count in counts.items():
        metrics.add_metric(name=kind.value.capitalize(), unit=MetricUnit.Count, value=count)
    metrics.add_metric(name="Quarantined", unit=MetricUnit.Count, value=len(report.quarantined))
    metrics.add_metric(name="Labels", unit=MetricUnit.Count, value=report.labels)
    metrics.add_metric(name="Duplicates", unit=MetricUnit.Count, value=report.duplicates)
    metrics.add_metric(name="Misrouted", unit=MetricUnit.Count, value=report.misrouted)
    metrics.add_metric(name="RetriedRecords", unit=MetricUnit.Count, value=len(report.failed))
    metrics.add_metadata(key="model_version", value=model_version)
    record_rule_matches(report)
    if not report.errors:
        log = logger.info
    elif all(error.retryable for error in report.errors):
        log = logger.warning
    else:
        log = logger.error
    log(
        "batch scored",
        extra={
            "decisions": {kind.value: count for kind, count in counts.items()},
            "quarantined": [
                {"sequence_number": q.record.sequence_number, "field": q.field, "reason": q.reason}
                for q in report.quarantined
            ],
            "labels": report.labels,
            "duplicates": report.duplicates,
            "misrouted": report.misrouted,
            "retried": len(report.failed),
            "errors": [error_fields(error) for error in report.errors],
            "model_version": model_version,
        },
    )


def record_rule_matches(report: BatchReport) -> None:
    """One RuleMatches metric per rule or list that matched in the batch, its code the `rule` dimension."""
    matched = Counter(code for decision in report.decisions for code in decision.rule_reasons)
    for code, count in sorted(matched.items()):
        with single_metric(
            name="RuleMatches",
            unit=MetricUnit.Count,
            value=count,
            namespace=metrics.namespace,
            default_dimensions={"service": "fraudwatch"},
        ) as metric:
            metric.add_dimension(name="rule", value=code)


def record_inline(decided: InlineDecision) -> None:
    """An inline decision's metrics and log line, as a batch of one (nothing when it was made before)."""
    if decided.new:
        record_batch(decided.report, decided.decision.model_version)


def error_fields(error: AwsCallError) -> dict[str, object]:
    """What the logs say of a failed AWS call: never AWS's message, which can echo ids and amounts."""
    fields: dict[str, object] = {
        "type": type(error).__name__,
        "operation": error.operation,
        "resource": error.resource,
        "code": error.code,
        "status": error.status,
        "retryable": error.retryable,
    }
    if error.unwritten is not None:
        fields["unwritten"] = len(error.unwritten)
    return fields
