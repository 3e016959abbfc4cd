"""Logging, metrics and tracing in one place (Powertools). Logs carry ids and counts, never card data."""

from __future__ import annotations

import functools
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from aws_lambda_powertools import Logger, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from fraudwatch.domain.decision import Decision
from fraudwatch.errors import AwsCallError

if TYPE_CHECKING:  # the scoring core imports numpy; the cases function's layers have none
    from fraudwatch.domain.inline import InlineDecision
    from fraudwatch.domain.scoring import BatchReport


class OrjsonEMFMetrics(AmazonCloudWatchEMFProvider):
    """Powertools' CloudWatch EMF metrics, each document printed with orjson rather than the stdlib's json.

    The stdlib's float formatting is most of what a batch's metrics cost: its document of some 200 values
    (scores and latencies) takes 87 µs to print with `json.dumps`, 4 µs with orjson, the same numbers read
    back; 10,200 instructions a record less for the real handler at batch 100, 2.7 %
    (bench/handler_instructions.py). Only the printing is ours: the metric set and its checks, the
    document (`serialize_metric_set`), `log_metrics`, the cold-start metric, and what a flush does with
    nothing to print or with metrics disabled (`POWERTOOLS_METRICS_DISABLED`) are Powertools'. The
    provider (Powertools' `EphemeralMetrics`) rather than a `Metrics` around it: `log_metrics` flushes
    through the provider, and `Metrics` would not show a provider's metric set as its own `metric_set`,
    which `add_distribution` fills.
    """

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        """Print the metric set as one EMF document and clear it, as Powertools' flush does."""
        if self.metric_set and not is_metrics_disabled():
            print_emf(self.serialize_metric_set())
            self.clear_metrics()
        else:
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)

    def log_metrics(
        self,
        lambda_handler: Callable[..., Any] | None = None,
        capture_cold_start_metric: bool = False,
        raise_on_empty_metrics: bool = False,
        **kwargs: Any,
    ) -> Callable[..., Any]:
        """Powertools' `log_metrics`, annotated as `Metrics.log_metrics` is (the provider's is not)."""
        decorator: Callable[..., Any] = super().log_metrics(
            lambda_handler=lambda_handler,
            capture_cold_start_metric=capture_cold_start_metric,
            raise_on_empty_metrics=raise_on_empty_metrics,
            **kwargs,
        )
        return decorator


def print_emf(document: Mapping[str, Any]) -> None:
    """Print an EMF document on one line, as Powertools prints its own, to standard output."""
    print(orjson.dumps(document).decode())


logger = Logger(service="fraudwatch")
metrics = OrjsonEMFMetrics(namespace="Fraudwatch", service="fraudwatch")
# Most requests to the API (a GET, a refusal, a transaction decided before) and many scheduled runs have
# no metric to publish, which is as it should be: Powertools' warning then says nothing, on every cold
# start of every function. Its documentation's own way to silence it.
warnings.filterwarnings("ignore", "No application metrics to publish*")


def traced(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Powertools' `capture_lambda_handler` when tracing is on; the handler itself when it is off.

    Tracing is off where Powertools turns it off (POWERTOOLS_TRACE_DISABLED, or outside Lambda). Then no
    Tracer is built: Powertools' Tracer imports the X-Ray SDK's recorder even disabled, a fifth of a cold
    start (issue 17), to trace nothing.
    """
    if Tracer._is_tracer_disabled():
        return handler
    return _tracer().capture_lambda_handler(handler)


@functools.cache
def _tracer() -> Tracer:
    return Tracer(service="fraudwatch")


MAX_EMF_VALUES = 100
"""Values of one metric in one EMF document: CloudWatch's limit (Powertools' too)."""


def record_batch(report: BatchReport, model_version: str) -> None:
    """Emit a batch's metrics (EMF) and one structured log line.

    The line is a warning when AWS calls failed, an error when one of them failed for good (access
    denied, a missing resource, a refused request, an unusable key): retrying will not mend that.
    """
    counts = Counter(decision.decision for decision in report.decisions)
    metrics.add_metadata(key="model_version", value=model_version)
    add_distribution("Score", MetricUnit.NoUnit, [decision.score for decision in report.decisions])
    add_distribution(
        "ChallengerScore",
        MetricUnit.NoUnit,
        [d.challenger.score for d in report.decisions if d.challenger is not None],
    )
    add_distribution("DecisionLatency", MetricUnit.Milliseconds, report.latencies_ms)
    add_distribution("Scored", MetricUnit.Count, [len(report.decisions)])
    for kind in Decision:
        add_distribution(kind.value.capitalize(), MetricUnit.Count, [counts[kind]])
    add_distribution("Quarantined", MetricUnit.Count, [len(report.quarantined)])
    add_distribution("Labels", MetricUnit.Count, [report.labels])
    add_distribution("Duplicates", MetricUnit.Count, [report.duplicates])
    add_distribution("Misrouted", MetricUnit.Count, [report.misrouted])
    add_distribution("RetriedRecords", MetricUnit.Count, [len(report.failed)])
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
            "decisions": {kind.value: counts[kind] for kind in Decision},
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


def add_distribution(name: str, unit: MetricUnit, values: Sequence[float]) -> None:
    """Every value of a batch's metric (a per-decision one, or a count), set at once rather than one
    `add_metric` call a value, with the same result.

    `Metrics.add_metric` costs 2.4 µs a call, and appends one value a call: most of that is a debug line
    of the metric's whole list that it formats at each, debug on or off, quadratic in the batch for a
    per-decision metric (42 µs a record at batch 100). Here the values go in as EMF lists of at most
    MAX_EMF_VALUES: the last (or only) one joins the metric set that `log_metrics` flushes with the
    batch's other metrics, any before it is printed now as an EMF document of its own, with the same
    namespace, dimensions and metadata (Powertools' own `serialize_metric_set`). A metric new to the set
    gets the entry `add_metric` makes (its unit's value, standard resolution, the values as floats):
    the names here are constants of a valid length, the units members of `MetricUnit`, and a batch's
    dozen metrics are far from the 100 at which `add_metric` would print the set early (all three are
    what `add_metric` checks; tests/unit/test_observability.py compares the set with its own). The
    batch's nine counts and the distributions' first values made so rather than by `add_metric`: 3,200
    instructions a record less at batch 100 (bench/handler_instructions.py).
    """
    if not values:
        return
    entry = metrics.metric_set.get(name)
    if entry is None:
        entry = metrics.metric_set[name] = {"Unit": unit.value, "StorageResolution": 60, "Value": []}
    pending = [*entry["Value"], *map(float, values)]
    while len(pending) > MAX_EMF_VALUES:
        full = {**entry, "Value": pending[:MAX_EMF_VALUES]}
        document = metrics.serialize_metric_set(
            metrics={name: full}, dimensions=metrics.dimension_set, metadata=metrics.metadata_set
        )
        print_emf(document)
        pending = pending[MAX_EMF_VALUES:]
    entry["Value"] = pending


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
