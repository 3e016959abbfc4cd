"""The scoring Lambda: Kinesis batches in, decisions out. Wiring only; the work is in `fraudwatch`."""

from __future__ import annotations

import gc
import random
from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from snapshot_restore_py import register_after_restore

from fraudwatch.adapters.model import load_model
from fraudwatch.kinesis_batch import ScoringBatchProcessor
from fraudwatch.observability import logger, metrics, record_batch, traced
from fraudwatch.settings import Settings
from fraudwatch.wiring import build_service, fresh_session

settings = Settings.from_env()
model = load_model(settings.model_dir)
session = boto3.Session()
service = build_service(settings, session, model=model)
processor = ScoringBatchProcessor(
    service, on_report=lambda report: record_batch(report, service.model_version)
)
# What the cold start built (libraries, clients, the model) lives as long as the container: frozen, it is
# left out of the collector's full passes, which would otherwise walk all of it during every batch.
gc.freeze()
# A batch allocates and frees some hundred objects a record, nearly none of them in cycles: a young-generation
# pass every 10,000 allocations rather than 700 takes the collector from 3 % of a batch's instructions to
# nearly none (callgrind, docs/benchmarks.md), for at most that many young objects more held between passes.
gc.set_threshold(10_000)


def after_restore() -> None:
    """SnapStart resumes every new environment from one snapshot of the init above: give this one AWS
    clients of its own (fresh connections and credentials) around the same models (the layer's and the
    registry's it had loaded), and its own seed for the retries' jitter. The processor keeps no state
    between batches but its service."""
    global service
    random.seed()
    service = processor.service = build_service(
        settings, fresh_session(session), model=model, models=service.models
    )


register_after_restore(after_restore)


def record_handler(record: KinesisStreamRecord) -> None:
    """Report one record's outcome from the batch just scored."""
    processor.raise_if_failed(record)


@logger.inject_lambda_context
@traced
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Score a Kinesis batch; the response lists only the records to retry."""
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
