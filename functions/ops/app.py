"""The model operations function: on EventBridge schedules, drift every 15 minutes and the matured labels'
recall and precision once a day, published as the metrics the alarms watch; and the daily count of
merchants' payments, put on the stream as activity records. Wiring only; the work is in
`fraudwatch.model_ops`."""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from fraudwatch.domain.drift import SCORE
from fraudwatch.domain.matured import MaturedDay
from fraudwatch.model_ops import JOBS, OpsSettings, build_ops
from fraudwatch.observability import logger, metrics, traced

ops = build_ops(OpsSettings.from_env())


@logger.inject_lambda_context
@traced
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run the event's `job` (its schedule's constant input), at its `time` if it has one (ISO 8601;
    default: now); return what it measured (ids, counts and figures: no card data)."""
    job = event.get("job")
    if job not in JOBS:
        raise ValueError(f"job must be one of {', '.join(JOBS)}, got {job!r}")
    now = datetime.fromisoformat(event["time"]).timestamp() if "time" in event else time.time()
    if job == "drift":
        run = ops.drift(now)
        metrics.add_metric(name="DriftWindowsMeasured", unit=MetricUnit.Count, value=len(run.drifts))
        result: dict[str, Any] = {
            "job": job,
            "model_version": run.version,
            "has_reference": run.reference is not None,
            "windows": [
                {"start": d.start, "rows": d.rows, "score_psi": round(d.of(SCORE), 4)} for d in run.drifts
            ],
            "drifting": run.drifting,
        }
    elif job == "activity":
        activities = ops.activity(now)
        metrics.add_metric(name="ActivityRecordsPut", unit=MetricUnit.Count, value=len(activities))
        result = {"job": job, "records": len(activities), "days": sorted({a.day for a in activities})}
    else:
        matured = ops.matured(now)
        metrics.add_metric(name="MaturedDaysMeasured", unit=MetricUnit.Count, value=len(matured))
        result = {"job": job, "days": [_day(m) for m in matured]}
    # a warning when an alarm is about to fire, or when drift cannot be measured at all
    alarming = job == "drift" and (result["drifting"] or not result["has_reference"])
    (logger.warning if alarming else logger.info)("model operations run", extra=result)
    return result


def _day(day: MaturedDay) -> dict[str, Any]:
    """A matured day's figures, undefined ones as None (JSON has no NaN)."""
    return {
        name: None if isinstance(value, float) and math.isnan(value) else value
        for name, value in day._asdict().items()
    }
