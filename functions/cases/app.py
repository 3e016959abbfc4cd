"""The cases function: FLAGGED alerts in (an SQS FIFO queue on the alerts topic), review cases opened;
and, each minute, the queue's metrics. Wiring only; the work is in `fraudwatch`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from fraudwatch.cases_wiring import CaseSettings, build_opener, record_opened, report_queue
from fraudwatch.domain.cases import decision_from_alert
from fraudwatch.observability import logger, metrics

store, opener = build_opener(CaseSettings.from_env())
# FIFO: a failed record fails the rest of its batch, which comes back in order; a record that never
# opens (not a decision) reaches the dead-letter queue after the queue's maxReceiveCount.
processor = SqsFifoPartialProcessor()


def record_handler(record: SQSRecord) -> None:
    """Open the case of one alert (raw delivery: the body is the decision record)."""
    decision = decision_from_alert(json.loads(record.body))
    opened = opener.open(decision)
    record_opened(opened)
    logger.info("case opened" if opened else "case already open", extra={"case_id": decision.transaction_id})


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext
) -> PartialItemFailureResponse | dict[str, float]:
    """An SQS batch of alerts opens cases (only failed records are retried); a scheduled event reports."""
    if "Records" not in event:
        return report_queue(store, datetime.fromisoformat(event["time"]).astimezone(UTC))
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
