"""Building the review cases' services from settings, and the queue's metrics.

Why cases are opened off the scoring path: a case is opened by the cases function from the alerts
topic (an SQS FIFO queue subscribed to it, FLAGGED alerts only unless `ReviewRejected`), not by the
scoring function in its batch. Opening must be a conditional write, so that an alert delivered again
never reopens or overwrites a case an analyst has worked, and DynamoDB's batch writes take no
conditions: in the batch it would cost one PutItem per alert against a budget of ten AWS calls per
hundred records, plus a query of the user's recent decisions each. Off the path, the scoring function
is unchanged (its CPU and its calls), a case waits at most a poll behind its alert, and a cases table
that fails delays no decision.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import boto3
from aws_lambda_powertools.metrics import MetricUnit

from fraudwatch.adapters.aws import CLIENT_CONFIG
from fraudwatch.adapters.cases import DynamoCaseStore, KinesisLabels
from fraudwatch.adapters.controls import ControlsStore
from fraudwatch.adapters.dynamodb import DynamoDecisionStore
from fraudwatch.domain.cases import CaseOpener, CaseService, Verdict
from fraudwatch.errors import ConfigurationError
from fraudwatch.observability import metrics

REPORT_PERIOD = timedelta(minutes=1)
"""The schedule of the queue's metrics: each run reports the verdicts of the minute before its own."""


@dataclass(frozen=True, slots=True)
class CaseSettings:
    """Where the cases, the decisions, the stream (for labels) and the lists (for blocks) are."""

    cases_table: str
    decisions_table: str
    stream_name: str | None = None
    lists_table: str | None = None
    rules_table: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> CaseSettings:
        """CASES_TABLE and DECISIONS_TABLE are required; STREAM_NAME for closing, LISTS_TABLE for blocks."""
        values = {name: env.get(name, "").strip() for name in ("CASES_TABLE", "DECISIONS_TABLE")}
        for name, value in values.items():
            if not value:
                raise ConfigurationError(f"{name} is not set")
        return cls(
            cases_table=values["CASES_TABLE"],
            decisions_table=values["DECISIONS_TABLE"],
            stream_name=env.get("STREAM_NAME", "").strip() or None,
            lists_table=env.get("LISTS_TABLE", "").strip() or None,
            rules_table=env.get("RULES_TABLE", "").strip() or None,
        )


def build_opener(
    settings: CaseSettings, session: boto3.Session | None = None
) -> tuple[DynamoCaseStore, CaseOpener]:
    """What the cases function opens cases with, and its store (which the queue's metrics read)."""
    dynamodb = (session or boto3.Session()).client("dynamodb", config=CLIENT_CONFIG)
    store = DynamoCaseStore(settings.cases_table, dynamodb)
    return store, CaseOpener(store, DynamoDecisionStore(settings.decisions_table, dynamodb))


def build_cases(settings: CaseSettings, session: boto3.Session | None = None) -> CaseService:
    """What analysts work cases with (the HTTP API, the command line)."""
    session = session or boto3.Session()
    dynamodb = session.client("dynamodb", config=CLIENT_CONFIG)
    if settings.stream_name is None:
        raise ConfigurationError("STREAM_NAME is not set: closing a case puts its label on the stream")
    lists = None
    if settings.lists_table:
        lists = ControlsStore(settings.lists_table, settings.rules_table or "", dynamodb)
    return CaseService(
        store=DynamoCaseStore(settings.cases_table, dynamodb),
        labels=KinesisLabels(settings.stream_name, session.client("kinesis", config=CLIENT_CONFIG)),
        lists=lists,
    )


def review_cases(session: boto3.Session, env: Mapping[str, str] = os.environ) -> CaseService | None:
    """The API's review cases and console (docs/cases.md), where the template gives it a cases table."""
    return build_cases(CaseSettings.from_env(env), session) if env.get("CASES_TABLE") else None


class QueueFigures(Protocol):
    """What the queue's metrics read (DynamoCaseStore)."""

    def count_open(self) -> tuple[int, str | None]:
        """Open cases, and when the oldest was opened."""
        ...

    def verdicts_between(self, start: str, end: str) -> dict[Verdict, int]:
        """Verdicts given in a period, by kind."""
        ...


def record_opened(opened: bool) -> None:
    """An alert handled: a case opened, or one already open (an alert delivered again)."""
    metrics.add_metric(name="CasesOpened" if opened else "CasesAlreadyOpen", unit=MetricUnit.Count, value=1)


def report_queue(store: QueueFigures, at: datetime) -> dict[str, float]:
    """The queue's metrics at `at` (the schedule's time): open cases, the oldest one's age, and the
    verdicts of each kind given in the period before; emitted as EMF and returned."""
    end = at.astimezone(UTC).replace(second=0, microsecond=0)
    open_cases, oldest = store.count_open()
    verdicts = store.verdicts_between((end - REPORT_PERIOD).isoformat(), end.isoformat())
    age = 0.0 if oldest is None else max((at - datetime.fromisoformat(oldest)).total_seconds(), 0.0)
    figures = {
        "OpenCases": float(open_cases),
        "OldestOpenCaseAge": age,
        "FraudVerdicts": float(verdicts[Verdict.FRAUD]),
        "GenuineVerdicts": float(verdicts[Verdict.GENUINE]),
    }
    for name, value in figures.items():
        unit = MetricUnit.Seconds if name == "OldestOpenCaseAge" else MetricUnit.Count
        metrics.add_metric(name=name, unit=unit, value=value)
    return figures
