"""Building the scoring service from settings: clients, stores and model, once per container."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
import botocore.session

from fraudwatch.adapters.aws import CLIENT_CONFIG
from fraudwatch.adapters.bundle import read_bundle
from fraudwatch.adapters.controls import CachedControls, ControlsStore
from fraudwatch.adapters.drift import DriftStore, FlushingDriftRecorder
from fraudwatch.adapters.dynamodb import DynamoDecisionStore, DynamoProfileStore
from fraudwatch.adapters.model import load_model
from fraudwatch.adapters.registry import Member, ModelRegistry, RegistryModels
from fraudwatch.adapters.sns import SnsAlertPublisher
from fraudwatch.adapters.sqs import SqsQuarantine
from fraudwatch.domain.inline import InlineScoring
from fraudwatch.domain.lineup import FixedLineup, Lineup, ModelSource
from fraudwatch.domain.ports import Model
from fraudwatch.domain.scoring import ScoringService
from fraudwatch.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def build_service(
    settings: Settings,
    session: boto3.Session | None = None,
    endpoint_url: str | None = None,
    model: Model | None = None,
    models: ModelSource | None = None,
) -> ScoringService:
    """The scoring service wired to DynamoDB, SNS, SQS and the bundled model (or `model`, already loaded,
    and `models`' lineup and loaded versions: new clients around them, as after a SnapStart restore)."""
    session = session or boto3.Session()
    return _service(
        settings,
        session,
        session.client("dynamodb", config=CLIENT_CONFIG, endpoint_url=endpoint_url),
        endpoint_url,
        model,
        models,
    )


def fresh_session(loaded: boto3.Session) -> boto3.Session:
    """A new session (credentials resolved again, no connection shared) that reuses the service models
    `loaded` has read: reading them again is most of a client's cost (tens of milliseconds)."""
    core = botocore.session.get_session()
    core.register_component("data_loader", loaded._session.get_component("data_loader"))
    return boto3.Session(botocore_session=core, region_name=loaded.region_name)


def build_inline(
    settings: Settings,
    session: boto3.Session | None = None,
    endpoint_url: str | None = None,
    model: Model | None = None,
    models: ModelSource | None = None,
) -> InlineScoring:
    """The inline API's scoring: the same service, and the decisions read back, on one DynamoDB client.

    `model`, when given, is used instead of loading the bundle, and `models`' lineup and loaded versions
    are kept on the new clients (new clients around loaded models, as after a SnapStart restore).
    """
    session = session or boto3.Session()
    dynamodb = session.client("dynamodb", config=CLIENT_CONFIG, endpoint_url=endpoint_url)
    service = _service(settings, session, dynamodb, endpoint_url, model, models)
    return InlineScoring(service, DynamoDecisionStore(settings.decisions_table, dynamodb))


def _service(
    settings: Settings,
    session: boto3.Session,
    dynamodb: DynamoDBClient,
    endpoint_url: str | None,
    model: Model | None = None,
    models: ModelSource | None = None,
) -> ScoringService:
    sns = session.client("sns", config=CLIENT_CONFIG, endpoint_url=endpoint_url)
    sqs = session.client("sqs", config=CLIENT_CONFIG, endpoint_url=endpoint_url)
    controls = None
    if settings.lists_table and settings.rules_table:
        store = ControlsStore(settings.lists_table, settings.rules_table, dynamodb)
        controls = CachedControls(store, max_age=settings.controls_max_age)
    drift = None
    if settings.drift_table:
        drift = FlushingDriftRecorder(
            DriftStore(settings.drift_table, dynamodb),
            window_seconds=settings.drift_window_seconds,
            flush_every=settings.drift_flush_seconds,
        )
    return ScoringService(
        profiles=DynamoProfileStore(
            settings.profiles_table,
            settings.merchant_profiles_table,
            dynamodb,
            labels_table_name=settings.labels_table,
            decisions_table_name=settings.decisions_table,
        ),
        decisions=DynamoDecisionStore(settings.decisions_table, dynamodb),
        alerts=SnsAlertPublisher(settings.alerts_topic_arn, sns),
        quarantine=SqsQuarantine(settings.quarantine_queue_url, sqs),
        models=_models(settings, session, dynamodb, endpoint_url, model, models),
        controls=controls,
        drift=drift,
    )


def _models(
    settings: Settings,
    session: boto3.Session,
    dynamodb: DynamoDBClient,
    endpoint_url: str | None,
    model: Model | None,
    previous: ModelSource | None,
) -> ModelSource:
    """The layer's bundle alone, or the registry's lineup with the layer's bundle as its fallback
    (`previous`'s, on these clients, when given)."""
    if isinstance(previous, FixedLineup):
        return previous
    if not (settings.models_bucket and settings.models_table):
        layer = Member(model or load_model(settings.model_dir), read_bundle(settings.model_dir).reference)
        return FixedLineup(
            Lineup(layer.model, settings.thresholds(layer.model.thresholds), reference=layer.reference)
        )
    s3 = session.client("s3", config=CLIENT_CONFIG, endpoint_url=endpoint_url)
    registry = ModelRegistry(settings.models_bucket, settings.models_table, s3=s3, dynamodb=dynamodb)
    if isinstance(previous, RegistryModels):
        return previous.rewired(registry)
    layer = Member(model or load_model(settings.model_dir), read_bundle(settings.model_dir).reference)
    return RegistryModels(
        registry,
        layer,
        thresholds=settings.thresholds,
        cache_dir=settings.model_cache_dir,
        max_age=settings.models_max_age,
    )
