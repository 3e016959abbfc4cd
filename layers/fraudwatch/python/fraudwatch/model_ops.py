"""The scheduled model operations (ModelOpsFunction, and `fraudwatch models drift|matured|run-ops`): the
drift of the champion's live traffic from its training data, every 15 minutes, and the matured labels'
recall and precision of the live decisions, daily; both published as the metrics the drift and matured
alarms watch. And, daily after midnight, the count of each merchant's payments of the days just ended,
put on the stream as activity records (domain/activity.py): the merchants' signals before labels.

Drift is measured for the champion only: the scoring functions count the champion's rows and scores in
its reference bins (adapters/drift.py) and no challenger's, which would double their drift work for a
model that decides nothing. The champion is the registry's (its bundle fetched once per container into
`model_cache_dir`), or the layer's own bundle when the registry names none, as the scoring functions do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import boto3

from fraudwatch.adapters.aws import CLIENT_CONFIG
from fraudwatch.adapters.bundle import read_bundle
from fraudwatch.adapters.drift import DriftStore
from fraudwatch.adapters.dynamodb import DynamoDecisionStore
from fraudwatch.adapters.labels import DynamoLabelStore
from fraudwatch.adapters.model_metrics import ModelMetrics
from fraudwatch.adapters.registry import ModelRegistry
from fraudwatch.adapters.stream import KinesisEvents
from fraudwatch.domain.activity import MAX_COUNT_DAYS, RECOUNT_DAYS, MerchantActivity, count_recent
from fraudwatch.domain.drift import Reference, WindowDrift, drifting, settled_windows, window_drift
from fraudwatch.domain.events import activity_records
from fraudwatch.domain.matured import DAY, MaturedDay, latest_verdicts, matured_days, matured_span
from fraudwatch.errors import BundleError, ConfigurationError
from fraudwatch.settings import DEFAULT_MODEL_DIR, optional_number

JOBS = ("drift", "matured", "activity")
"""The scheduled jobs, each a schedule's constant input `{"job": ...}` (template.yaml)."""


@dataclass(frozen=True, slots=True)
class OpsSettings:
    """Where the registry, the drift counts, the decisions and the labels are; how to measure."""

    models_bucket: str
    models_table: str
    drift_table: str
    decisions_table: str
    labels_table: str
    stream_name: str = ""
    """Where the daily count's activity records go ("": no activity job)."""
    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    """The layer's bundle: the champion while the registry names none."""
    model_cache_dir: Path = Path("/tmp/models")  # noqa: S108 - Lambda's only writable directory
    window_seconds: int = 900
    """As the scoring functions' DRIFT_WINDOW_SECONDS."""
    windows: int = 2
    """Closed windows measured a run: the alarms need two in a row, and a run that failed is made up."""
    settle_seconds: float = 120.0
    """A window is measured this long after it closed at the earliest: the scoring functions flush a
    window's last counts within their flush period (60 s) after it closes."""
    min_rows: int = 100
    label_delay_days: float = 7.0
    matured_days: int = 7
    activity_days: int = RECOUNT_DAYS
    """Days the activity job counts, ending with the day just ended (payments reach the stream up to 7
    days late)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OpsSettings:
        """Read and validate the settings; a missing or malformed one raises ConfigurationError naming it."""
        names = (
            "MODELS_BUCKET",
            "MODELS_TABLE",
            "DRIFT_TABLE",
            "DECISIONS_TABLE",
            "LABELS_TABLE",
            "STREAM_NAME",
        )
        values = {name: env.get(name, "").strip() for name in names}
        for name, value in values.items():
            if not value:
                raise ConfigurationError(f"{name} is not set")
        return cls(
            models_bucket=values["MODELS_BUCKET"],
            models_table=values["MODELS_TABLE"],
            drift_table=values["DRIFT_TABLE"],
            decisions_table=values["DECISIONS_TABLE"],
            labels_table=values["LABELS_TABLE"],
            stream_name=values["STREAM_NAME"],
            model_dir=Path(env.get("MODEL_DIR") or DEFAULT_MODEL_DIR),
            model_cache_dir=Path(env.get("MODEL_CACHE_DIR") or "/tmp/models"),  # noqa: S108
            window_seconds=int(_number(env, "DRIFT_WINDOW_SECONDS", 900, 1, 86400)),
            windows=int(_number(env, "DRIFT_WINDOWS", 2, 1, 96)),
            settle_seconds=_number(env, "DRIFT_SETTLE_SECONDS", 120, 0, 3600),
            min_rows=int(_number(env, "DRIFT_MIN_ROWS", 100, 1, 10**9)),
            label_delay_days=_number(env, "LABEL_DELAY_DAYS", 7, 0, 90),
            matured_days=int(_number(env, "MATURED_DAYS", 7, 1, 80)),
            activity_days=int(_number(env, "ACTIVITY_DAYS", RECOUNT_DAYS, 1, MAX_COUNT_DAYS)),
        )


class DriftRun(NamedTuple):
    """What a drift run measured: the champion, its windows' PSI, and the columns drifting in the last two."""

    version: str
    reference: Reference | None
    """None: the champion's card has no reference distribution (a bundle made before drift)."""
    drifts: list[WindowDrift]
    drifting: list[str]


class ModelOps:
    """The scheduled steps, on the stores, the metrics and the stream given."""

    def __init__(
        self,
        settings: OpsSettings,
        *,
        registry: ModelRegistry,
        drift_store: DriftStore,
        decisions: DynamoDecisionStore,
        labels: DynamoLabelStore,
        metrics: ModelMetrics,
        stream: KinesisEvents | None = None,
    ) -> None:
        self.settings = settings
        self._stream = stream
        self._registry = registry
        self._drift_store = drift_store
        self._decisions = decisions
        self._labels = labels
        self._metrics = metrics

    def champion(self) -> tuple[str, Reference | None]:
        """The champion's version and reference distribution (None in a card without one)."""
        version = self._registry.lineup().champion
        bundle = (
            self._registry.fetch(version, self.settings.model_cache_dir)
            if version
            else self.settings.model_dir
        )
        try:
            contents = read_bundle(bundle)
        except BundleError as exc:
            raise ConfigurationError(f"the champion's bundle ({version or 'the layer'}): {exc}") from exc
        return contents.version, contents.reference

    def drift(self, now: float) -> DriftRun:
        """The champion's PSI in the last settled windows, published (nothing without a reference)."""
        version, reference = self.champion()
        if reference is None:
            return DriftRun(version, None, [], [])
        s = self.settings
        since, until = settled_windows(
            now, window_seconds=s.window_seconds, windows=s.windows, settle_seconds=s.settle_seconds
        )
        drifts = window_drift(reference, self._drift_store.windows(version, since, until), s.min_rows)
        self._metrics.drift(reference, drifts)
        return DriftRun(version, reference, drifts, drifting(reference, drifts))

    def matured(self, now: float, labels: Mapping[str, bool] | None = None) -> list[MaturedDay]:
        """The matured days' recall and precision, published; the verdicts are the labels table's latest,
        or `labels` (a labelled file's, by transaction id) when given. Only labelled decisions count, so
        only theirs are read (by key), not every decision of the days."""
        s = self.settings
        first, _ = matured_span(now, delay_days=s.label_delay_days, days=s.matured_days)
        verdicts = latest_verdicts(self._labels.known_since(first)) if labels is None else labels
        matured = matured_days(
            self._decisions.get_many(verdicts),
            verdicts,
            now=now,
            delay_days=s.label_delay_days,
            days=s.matured_days,
        )
        self._metrics.matured(matured)
        return matured

    def activity(self, now: float) -> list[MerchantActivity]:
        """Count each merchant's payments of the days ending with the one before `now`'s from the decisions
        table, and put one activity record per merchant and day on the stream (keyed by merchant, as
        labels are: the merchant's one writer sets the day's counts, so a rerun doubles nothing)."""
        if self._stream is None:
            raise ConfigurationError("the activity job needs the stream (STREAM_NAME)")
        last = int(now // DAY) - 1
        activities = count_recent(self._decisions.payments_on, last, self.settings.activity_days)
        self._stream.put_many(activity_records(activities), key="merchant_id")
        return activities


def build_ops(settings: OpsSettings, session: boto3.Session | None = None) -> ModelOps:
    """The steps wired to DynamoDB, S3 and CloudWatch (the endpoint is AWS_ENDPOINT_URL's, if set)."""
    session = session or boto3.Session()
    dynamodb = session.client("dynamodb", config=CLIENT_CONFIG)
    return ModelOps(
        settings,
        registry=ModelRegistry(
            settings.models_bucket,
            settings.models_table,
            s3=session.client("s3", config=CLIENT_CONFIG),
            dynamodb=dynamodb,
        ),
        drift_store=DriftStore(settings.drift_table, dynamodb),
        decisions=DynamoDecisionStore(settings.decisions_table, dynamodb),
        labels=DynamoLabelStore(settings.labels_table, dynamodb),
        metrics=ModelMetrics(session.client("cloudwatch", config=CLIENT_CONFIG)),
        stream=KinesisEvents(settings.stream_name, session.client("kinesis", config=CLIENT_CONFIG))
        if settings.stream_name
        else None,
    )


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    value = optional_number(env, name, low, high)
    return default if value is None else value
