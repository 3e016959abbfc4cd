"""Building the scoring service from settings: clients, stores and model, once per container."""

from __future__ import annotations

import boto3
from botocore.config import Config

from fraudwatch.adapters.controls import CachedControls, ControlsStore
from fraudwatch.adapters.dynamodb import DynamoDecisionStore, DynamoProfileStore
from fraudwatch.adapters.model import load_model
from fraudwatch.adapters.sns import SnsAlertPublisher
from fraudwatch.adapters.sqs import SqsQuarantine
from fraudwatch.domain.scoring import ScoringService
from fraudwatch.settings import Settings

# Standard retry mode retries throttling and 5xx with backoff; timeouts stay well under the function's.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)


def build_service(
    settings: Settings, session: boto3.Session | None = None, endpoint_url: str | None = None
) -> ScoringService:
    """The scoring service wired to DynamoDB, SNS, SQS and the bundled model."""
    session = session or boto3.Session()
    dynamodb = session.client("dynamodb", config=CLIENT_CONFIG, endpoint_url=endpoint_url)
    sns = session.client("sns", config=CLIENT_CONFIG, endpoint_url=endpoint_url)
    sqs = session.client("sqs", config=CLIENT_CONFIG, endpoint_url=endpoint_url)
    model = load_model(settings.model_dir)
    controls = None
    if settings.lists_table and settings.rules_table:
        store = ControlsStore(settings.lists_table, settings.rules_table, dynamodb)
        controls = CachedControls(store, max_age=settings.controls_max_age)
    return ScoringService(
        profiles=DynamoProfileStore(settings.profiles_table, settings.merchant_profiles_table, dynamodb),
        decisions=DynamoDecisionStore(settings.decisions_table, dynamodb),
        alerts=SnsAlertPublisher(settings.alerts_topic_arn, sns),
        quarantine=SqsQuarantine(settings.quarantine_queue_url, sqs),
        model=model,
        thresholds=settings.thresholds(model.thresholds),
        controls=controls,
    )
