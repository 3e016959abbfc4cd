"""The inline scoring API's Lambda: HTTP API (payload v2) requests in, decisions out. Wiring only."""

from __future__ import annotations

import gc
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from fraudwatch.http_api import build_app
from fraudwatch.observability import logger, metrics, record_inline, tracer
from fraudwatch.settings import Settings
from fraudwatch.wiring import build_inline

scoring = build_inline(Settings.from_env())
app = build_app(scoring, on_decision=record_inline)
# As in the stream function: what the cold start built stays out of the collector's full passes.
gc.freeze()


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route one HTTP API request; the answer is the decision, or the error with its field and reason."""
    response: dict[str, Any] = app.resolve(event, context)
    return response
