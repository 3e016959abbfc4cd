"""Faults on every AWS call the handler makes, compared record by record with a clean run.

The same records go on two streams of in-process moto: one is consumed cleanly, the other with
DynamoDB throttling, 5xx and timeouts, and SNS and SQS failures injected at random (seeded) into a
share of the calls, through botocore's event hooks on the real handler's own clients. A fault is
injected at the call level, i.e. after the SDK's own retries: each injected fault is a call that
failed outright. Timeouts come both before the request (the write never happened) and after it (the
write happened, the response was lost). The local runner plays Lambda's event-source mapping with
the template's settings (partial-failure checkpoints, bisect, on-failure queue).

With retries until done (Lambda's default, MaximumRetryAttempts -1), every valid record must end
decided exactly once (decision, score and reasons equal to the clean run's; profiles equal, so no
transaction was applied twice), and the alerts sent must be the clean run's set (at least once:
duplicates are counted). With the template's 5 retries, a batch can be given up when this many calls
fail; then nothing may be lost silently: every record is decided, quarantined, or named by the
on-failure queue's message.
"""

from __future__ import annotations

import inspect
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from infra.events import event_from_transactions
from infra.invoke import Handler, LocalContext, load_handler
from infra.producer import live_transactions, stream_entry
from infra.runner import UNLIMITED, EventSourceRunner, MappingSettings, RunnerStats
from tests.adapters.conftest import mocked_aws
from tests.e2e.conftest import build_stack, comparable, drain_bodies, scan

RECORDS = 1_000
MALFORMED_EVERY = 50  # a malformed record among every 50, so the quarantine's calls fail too
SEED = 17


@dataclass(frozen=True)
class Fault:
    """One kind of injected failure: an error response, or an exception before or after the call."""

    name: str
    status: int = 0
    code: str = ""
    raise_before: Callable[..., Exception] | None = None
    raise_after: Callable[..., Exception] | None = None


DYNAMODB_FAULTS = (
    Fault("throttled", 400, "ProvisionedThroughputExceededException"),
    Fault("throttled", 400, "ThrottlingException"),
    Fault("5xx", 500, "InternalServerError"),
    Fault("5xx", 503, "ServiceUnavailable"),
    Fault("connect timeout", raise_before=ConnectTimeoutError),
    Fault("read timeout, write lost", raise_before=ReadTimeoutError),
    Fault("read timeout, write done", raise_after=ReadTimeoutError),
)
SNS_FAULTS = (
    Fault("throttled", 400, "Throttling"),
    Fault("5xx", 500, "InternalError"),
    Fault("read timeout, publish done", raise_after=ReadTimeoutError),
    Fault("connect timeout", raise_before=ConnectTimeoutError),
)
SQS_FAULTS = (
    Fault("5xx", 500, "InternalError"),
    Fault("read timeout, send done", raise_after=ReadTimeoutError),
)


@dataclass
class FaultInjector:
    """Fails a share of the calls of the handler's clients, at random from a seed; counts what it did."""

    rate: float
    seed: int
    injected: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    _pending_after: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def attach(self, client: Any, service: str, faults: tuple[Fault, ...]) -> None:
        """Hook every operation of one client."""
        client.meta.events.register(f"before-call.{service}", self._before(service, faults))
        client.meta.events.register(f"after-call.{service}", self._after)

    def _before(self, service: str, faults: tuple[Fault, ...]) -> Callable[..., Any]:
        def before(model: Any, context: dict[str, Any], **kwargs: Any) -> Any:
            self.calls[service] += 1
            if self._rng.random() >= self.rate:
                return None
            fault = self._rng.choice(faults)
            self.injected[f"{service} {fault.name}"] += 1
            if fault.raise_before is not None:
                raise fault.raise_before(endpoint_url=f"https://{service}.us-east-1.amazonaws.com")
            if fault.raise_after is not None:
                context["fraudwatch_fail_after"] = fault.raise_after
                return None
            error = {
                "Error": {"Code": fault.code, "Message": "injected"},
                "ResponseMetadata": {"HTTPStatusCode": fault.status},
            }
            return AWSResponse(f"https://{service}", fault.status, HTTPHeaders(), None), error

        return before

    def _after(self, context: dict[str, Any], **kwargs: Any) -> None:
        failure = context.pop("fraudwatch_fail_after", None)
        if failure is not None:
            raise failure(endpoint_url="https://aws")


# ------------------------------------------------------------------------------------------ the runs


@dataclass
class Run:
    """What one consumption of the stream left behind."""

    decisions: dict[str, dict[str, Any]]
    profiles: dict[str, str]
    alert_ids: list[str]
    quarantined: list[tuple[str, str]]  # (sequence number, field)
    on_failure: list[dict[str, Any]]
    stats: RunnerStats
    sequence_numbers: list[int]  # of the entries, in order

    def given_up(self, sequence: int) -> bool:
        """True when an on-failure message's range holds this record."""
        return any(
            int(m["KinesisBatchInfo"]["startSequenceNumber"])
            <= sequence
            <= int(m["KinesisBatchInfo"]["endSequenceNumber"])
            for m in self.on_failure
        )


@pytest.fixture(scope="module")
def cloud() -> Iterator[None]:
    """In-process moto for the whole module, so the clean run is made once and shared."""
    with pytest.MonkeyPatch.context() as patch, mocked_aws(patch):
        yield


@pytest.fixture(scope="module")
def entries() -> list[dict[str, Any]]:
    """The PutRecords entries both runs put: generated transactions with some malformed ones."""
    put: list[dict[str, Any]] = []
    # A fixed time of day: the features read the local hour, so the data (and the run) are the same
    # all day long.
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for i, tx in enumerate(live_transactions(RECORDS, seed=SEED, now=midnight)):
        if i % MALFORMED_EVERY == MALFORMED_EVERY - 1:
            put.append({"Data": json.dumps({**tx, "amount": -1}).encode(), "PartitionKey": "bad"})
        put.append(stream_entry(tx, i).request)
    return put


def load(outputs: dict[str, str], bundle: Path) -> Handler:
    saved = dict(os.environ)
    try:
        return load_handler(outputs, bundle_dir=bundle)
    finally:
        os.environ.clear()
        os.environ.update(saved)


TEMPLATE_MAPPING = MappingSettings.from_template()
UNTIL_DONE = replace(TEMPLATE_MAPPING, maximum_retry_attempts=UNLIMITED)


def consume(
    prefix: str,
    entries: list[dict[str, Any]],
    bundle: Path,
    rate: float = 0.0,
    settings: MappingSettings = UNTIL_DONE,
) -> tuple[Run, FaultInjector]:
    """Put the entries on a new stack's stream and run the mapping over it to the end."""
    outputs = build_stack(prefix)
    kinesis: Any = boto3.client("kinesis")
    sqs = boto3.client("sqs")
    sequence_numbers: list[int] = []
    for start in range(0, len(entries), 500):
        response = kinesis.put_records(StreamName=outputs["StreamName"], Records=entries[start : start + 500])
        assert response.get("FailedRecordCount", 0) == 0
        sequence_numbers.extend(int(r["SequenceNumber"]) for r in response["Records"])
    handler = load(outputs, bundle)
    service = inspect.unwrap(handler).__globals__["service"]
    service._profiles._sleep = service._decisions._sleep = lambda seconds: None  # backoff: time only
    injector = FaultInjector(rate, SEED)
    if rate:
        injector.attach(service._profiles._client, "dynamodb", DYNAMODB_FAULTS)
        injector.attach(service._alerts._client, "sns", SNS_FAULTS)
        injector.attach(service._quarantine._client, "sqs", SQS_FAULTS)
    runner = EventSourceRunner(
        stream_name=outputs["StreamName"],
        handler=handler,
        settings=settings,
        kinesis=kinesis,
        sqs=sqs,
        on_failure_queue_url=outputs["OnFailureQueueUrl"],
        poll_interval_s=0.01,
        retry_backoff_s=0,
    )
    stats = runner.run_until_idle(idle_s=0.3, timeout_s=120)
    dynamodb = boto3.client("dynamodb")
    decisions = scan(dynamodb, outputs["DecisionsTableName"], "transaction_id")
    profiles = scan(dynamodb, outputs["ProfilesTableName"], "user_id")
    run = Run(
        decisions={k: comparable(v) for k, v in decisions.items()},
        profiles={k: v["state"]["S"] for k, v in profiles.items()},
        alert_ids=[a["alert_id"]["StringValue"] for _, a in drain_bodies(sqs, outputs["AlertInboxUrl"])],
        quarantined=[
            (body["sequence_number"], body["field"])
            for body, _ in drain_bodies(sqs, outputs["QuarantineQueueUrl"])
        ],
        on_failure=[body for body, _ in drain_bodies(sqs, outputs["OnFailureQueueUrl"])],
        stats=stats,
        sequence_numbers=sequence_numbers,
    )
    return run, injector


@pytest.fixture(scope="module")
def clean(cloud: None, entries: list[dict[str, Any]], tiny_bundle: Path) -> Run:
    run, _ = consume("clean", entries, tiny_bundle)
    assert run.stats.retries == 0
    return run


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_under_faults_every_record_is_decided_exactly_once_and_nothing_is_lost(
    clean: Run, entries: list[dict[str, Any]], tiny_bundle: Path, rate: float
):
    run, injector = consume(f"faulty-{int(rate * 100)}", entries, tiny_bundle, rate)

    assert sum(injector.injected.values()) >= rate * sum(injector.calls.values()) / 2  # faults did happen
    assert run.on_failure == []  # retried until done: nothing given up
    assert len(clean.decisions) == RECORDS
    assert run.decisions.keys() == clean.decisions.keys()  # nothing lost, nothing invented
    different = [k for k in clean.decisions if run.decisions[k] != clean.decisions[k]]
    assert different == []  # decision, score, reasons, model version: item by item
    assert run.profiles == clean.profiles  # each transaction applied exactly once
    assert set(run.alert_ids) == set(clean.alert_ids)  # every alert went out (at least once)
    assert len(clean.alert_ids) == len(set(clean.alert_ids))
    assert set(run.quarantined) == set(clean.quarantined)  # every malformed record kept, with its field
    assert run.stats.retries > 0  # the faults were felt and retried


def test_with_the_templates_retry_limit_nothing_is_lost_silently(
    cloud: None, entries: list[dict[str, Any]], tiny_bundle: Path
):
    """At 30 % of calls failing even after the SDK's retries, 5 retries may not be enough for a batch:
    then the on-failure queue names it (the stream keeps its records 24 h for a redrive)."""
    run, _ = consume("template-limit", entries, tiny_bundle, 0.3, settings=TEMPLATE_MAPPING)

    quarantined = {int(sequence) for sequence, _ in run.quarantined}
    silently_lost = []
    for entry, sequence in zip(entries, run.sequence_numbers, strict=True):
        if entry["PartitionKey"] == "bad":
            handled = sequence in quarantined
        else:
            handled = json.loads(entry["Data"])["transaction_id"] in run.decisions
        if not handled and not run.given_up(sequence):
            silently_lost.append(sequence)
    assert silently_lost == []
    assert run.stats.records_sent_to_on_failure == sum(
        m["KinesisBatchInfo"]["batchSize"] for m in run.on_failure
    )


# ---------------------------------------------------------------- a crash between decision and alert

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)


def fraud_batch() -> dict[str, Any]:
    """Another user's transaction, eight ordinary ones of our user, then one far above their usual."""
    usual = [
        {
            "transaction_id": f"tx-crash-{i}",
            "user_id": "user-crash",
            "merchant_id": "merch-1",
            "amount": 30.0 + i,
            "currency": "USD",
            "timestamp": (START + timedelta(minutes=20 * i)).isoformat(),
            "category": "grocery",
        }
        for i in range(8)
    ]
    fraud = {**usual[0], "transaction_id": "tx-crash-big", "amount": 4800.0}
    fraud["timestamp"] = (START + timedelta(hours=4)).isoformat()
    other = {**usual[0], "transaction_id": "tx-other", "user_id": "user-other", "amount": 12.0}
    return event_from_transactions([other, *usual, fraud])


class ContainerKilled(Exception):
    """Stands for the process dying mid-invocation."""


@pytest.mark.parametrize("crash", ["sns error", "process dies"])
def test_a_crash_after_the_decision_is_written_still_sends_the_alert_with_the_same_id(
    cloud: None, tiny_bundle: Path, crash: str
):
    outputs = build_stack(f"crash-{crash.replace(' ', '-')}")
    handler = load(outputs, tiny_bundle)
    service = inspect.unwrap(handler).__globals__["service"]
    decisions_written: list[int] = []

    def after_write(**kwargs: Any) -> None:
        decisions_written.append(1)

    def fail_publish(**kwargs: Any) -> Any:
        assert decisions_written  # the decision is already in the table when the alert fails
        if crash == "process dies":
            raise ContainerKilled
        error = {"Error": {"Code": "InternalError", "Message": "injected"}}
        return AWSResponse("https://sns", 500, HTTPHeaders(), None), error

    service._decisions._client.meta.events.register("after-call.dynamodb.BatchWriteItem", after_write)
    sns_events = service._alerts._client.meta.events
    sns_events.register("before-call.sns.PublishBatch", fail_publish, unique_id="fail-publish")
    event = fraud_batch()
    dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")

    if crash == "process dies":
        with pytest.raises(ContainerKilled):
            handler(event, LocalContext())
        retry = event  # Lambda retries the whole batch after a function error
    else:
        failures = handler(event, LocalContext())["batchItemFailures"]
        assert failures  # the alerting user's records are reported for retry
        first = min(int(f["itemIdentifier"]) for f in failures)
        retry = {"Records": [r for r in event["Records"] if int(r["kinesis"]["sequenceNumber"]) >= first]}
    written = scan(dynamodb, outputs["DecisionsTableName"], "transaction_id")
    assert written["tx-crash-big"]["decision"]["S"] == "REJECTED"  # decided before the crash
    assert drain_bodies(sqs, outputs["AlertInboxUrl"]) == []  # ... but not alerted

    sns_events.unregister("before-call.sns.PublishBatch", unique_id="fail-publish")
    assert handler(retry, LocalContext()) == {"batchItemFailures": []}

    alerts = drain_bodies(sqs, outputs["AlertInboxUrl"])
    assert [a["alert_id"]["StringValue"] for _, a in alerts] == ["tx-crash-big"]
    after = scan(dynamodb, outputs["DecisionsTableName"], "transaction_id")
    assert comparable(after["tx-crash-big"]) == comparable(written["tx-crash-big"])  # the same decision
    assert alerts[0][0]["score"] == float(after["tx-crash-big"]["score"]["N"])
    profile = boto3.client("dynamodb").get_item(
        TableName=outputs["ProfilesTableName"], Key={"user_id": {"S": "user-crash"}}
    )["Item"]
    assert json.loads(profile["state"]["S"])["n"] == 9  # applied once, though processed twice
