"""The inline scoring API's Lambda: HTTP API (payload v2) requests in, decisions out. Wiring only."""

from __future__ import annotations

import gc
import random
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from snapshot_restore_py import register_after_restore

from fraudwatch.adapters.model import load_model
from fraudwatch.cases_wiring import review_cases
from fraudwatch.http_api import build_app
from fraudwatch.observability import logger, metrics, record_inline, traced
from fraudwatch.settings import Settings
from fraudwatch.wiring import build_inline, fresh_session

settings = Settings.from_env()
model = load_model(settings.model_dir)
session = boto3.Session()
scoring = build_inline(settings, session, model=model)
app = build_app(scoring, on_decision=record_inline, cases=review_cases(session))
# As in the stream function: what the cold start built stays out of the collector's full passes.
gc.freeze()


def after_restore() -> None:
    """SnapStart resumes every new environment from one snapshot of the init above: give this one AWS
    clients of its own (fresh connections and credentials) around the same models (the layer's and the
    registry's it had loaded), and its own seed for the retries' jitter."""
    global scoring, app
    random.seed()
    fresh = fresh_session(session)
    scoring = build_inline(settings, fresh, model=model, models=scoring.service.models)
    app = build_app(scoring, on_decision=record_inline, cases=review_cases(fresh))


register_after_restore(after_restore)


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@traced
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route one HTTP API request; the answer is the decision, or the error with its field and reason."""
    response: dict[str, Any] = app.resolve(event, context)
    return response
