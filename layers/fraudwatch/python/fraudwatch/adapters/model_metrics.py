"""The model operations' metrics in CloudWatch: drift per window and matured labels per day.

Published with PutMetricData rather than as EMF log lines, because each datapoint is stamped with the
start of the window (or the midnight of the day) it measures, not with the time of the run; a window
published again (each run measures the last two) lands in the same period with the same value, which
changes no statistic the alarms read (Maximum, Minimum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.adapters.aws import call_failed
from fraudwatch.domain.drift import SCORE, Reference, WindowDrift
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.matured import MaturedDay
from fraudwatch.errors import AwsCallError

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

NAMESPACE = "Fraudwatch"
"""The functions' namespace (POWERTOOLS_METRICS_NAMESPACE); the ops function's role may write no other."""
DIMENSIONS = [{"Name": "service", "Value": "fraudwatch"}]
MAX_DATA = 1000
"""Datapoints per PutMetricData call at most."""


class MetricsPublishError(AwsCallError):
    """CloudWatch refused or failed a PutMetricData call."""


def drift_data(reference: Reference, drifts: Sequence[WindowDrift]) -> list[dict[str, Any]]:
    """ScorePSI, TopFeaturePSI (the most drifted top feature) and FeaturePSI per feature, per window."""
    data: list[dict[str, Any]] = []
    for d in drifts:
        stamp = datetime.fromtimestamp(d.start, UTC)
        top = max(d.of(name) for name in reference.watched)
        data += [
            {"MetricName": "ScorePSI", "Dimensions": DIMENSIONS, "Timestamp": stamp, "Value": d.of(SCORE)},
            {"MetricName": "TopFeaturePSI", "Dimensions": DIMENSIONS, "Timestamp": stamp, "Value": top},
            *[
                {
                    "MetricName": "FeaturePSI",
                    "Dimensions": [*DIMENSIONS, {"Name": "feature", "Value": name}],
                    "Timestamp": stamp,
                    "Value": d.of(name),
                }
                for name in FEATURE_NAMES
            ],
        ]
    return data


def matured_data(matured: Sequence[MaturedDay]) -> list[dict[str, Any]]:
    """MaturedRecall and MaturedPrecision, one datapoint a day at its midnight (undefined ones left out)."""
    return [
        {
            "MetricName": name,
            "Dimensions": DIMENSIONS,
            "Timestamp": datetime.fromtimestamp(m.day, UTC),
            "Value": value,
        }
        for m in matured
        for name, value in (("MaturedRecall", m.recall), ("MaturedPrecision", m.precision))
        if not math.isnan(value)
    ]


class ModelMetrics:
    """Publishes the drift and matured metrics the alarms watch (ScoreDriftAlarm, FeatureDriftAlarm,
    MaturedRecallDropAlarm)."""

    def __init__(self, cloudwatch: CloudWatchClient) -> None:
        self._cloudwatch = cloudwatch

    def drift(self, reference: Reference, drifts: Sequence[WindowDrift]) -> None:
        """Each window's PSI metrics; raises MetricsPublishError."""
        self._put(drift_data(reference, drifts))

    def matured(self, matured: Sequence[MaturedDay]) -> None:
        """Each matured day's recall and precision; raises MetricsPublishError."""
        self._put(matured_data(matured))

    def _put(self, data: list[dict[str, Any]]) -> None:
        for at in range(0, len(data), MAX_DATA):
            try:
                self._cloudwatch.put_metric_data(
                    Namespace=NAMESPACE,
                    MetricData=data[at : at + MAX_DATA],  # type: ignore[arg-type]
                )
            except (ClientError, BotoCoreError) as exc:
                raise call_failed(
                    MetricsPublishError, exc, operation="PutMetricData", resource=NAMESPACE
                ) from exc
