"""Faults on every AWS call the handler makes, compared record by record with a clean run.

The same records go on two streams of in-process moto: one is consumed cleanly, the other with
DynamoDB throttling, 5xx and timeouts, and SNS and SQS failures injected at random (seeded) into a
share of the calls, through botocore's event hooks on the real handler's own clients. A fault is
injected at the call level, i.e. after the SDK's own retries: each injected fault is a call that
failed outright. Timeouts come both before the request (the write never happened) and after it (the
write happened, the response was lost). The local runner plays Lambda's event-source mapping with
the template's settings (partial-failure checkpoints, bisect, retries until decided, on-failure queue).

Every valid record must end decided exactly once (decision, score and reasons equal to the clean
run's; profiles equal, so no transaction was applied twice), every alert received once and every
malformed record quarantined once, as in the clean run. With a retry limit of an operator's choosing,
a batch can be given up; then nothing may be lost silently, and a redrive decides what was given up.
"""

from __future__ import annotations

import base64
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

from fraudwatch.adapters.dynamodb import stored_state
from infra.events import event_from_payloads, event_from_transactions, label_body
from infra.invoke import Handler, LocalContext, load_handler
from infra.producer import live_transactions, stream_entry
from infra.redrive import redrive
from infra.runner import UNLIMITED, EventSourceRunner, MappingSettings, RunnerStats
from tests.adapters.conftest import mocked_aws
from tests.e2e.conftest import build_stack, comparable, drain_bodies, scan

RECORDS = 1_000
MALFORMED_EVERY = 50  # a malformed record among every 50, so the quarantine's calls fail too
SEED = int(os.environ.get("FRAUDWATCH_FAULT_SEED", "17"))  # other seeds: docs/reliability.md


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

    outputs: dict[str, str]
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


def consume(
    prefix: str,
    entries: list[dict[str, Any]],
    bundle: Path,
    rate: float = 0.0,
    outage_calls: int = 0,
    settings: MappingSettings = TEMPLATE_MAPPING,
) -> tuple[Run, FaultInjector, Handler]:
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
    for adapter in (service._profiles, service._decisions, service._alerts, service._quarantine):
        adapter._sleep = lambda seconds: None  # backoff: time only
    if outage_calls:
        attach_outage(service._profiles._client, outage_calls)
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
    run = collect(outputs, stats, sequence_numbers)
    return run, injector, handler


def attach_outage(client: Any, calls: int) -> None:
    """Refuse the first `calls` DynamoDB writes for good (an IAM policy broken, then mended)."""
    refused: list[int] = []

    def before(**kwargs: Any) -> Any:
        if len(refused) >= calls:
            return None
        refused.append(1)
        error = {"Error": {"Code": "AccessDeniedException", "Message": "injected"}}
        return AWSResponse("https://dynamodb", 400, HTTPHeaders(), None), error

    client.meta.events.register("before-call.dynamodb.BatchWriteItem", before)


def collect(outputs: dict[str, str], stats: RunnerStats, sequence_numbers: list[int]) -> Run:
    """What the stack holds now; its queues are drained."""
    dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    decisions = scan(dynamodb, outputs["DecisionsTableName"], "transaction_id")
    profiles = scan(dynamodb, outputs["ProfilesTableName"], "user_id")
    return Run(
        outputs=outputs,
        decisions={k: comparable(v) for k, v in decisions.items()},
        profiles={k: stored_state(v) for k, v in profiles.items()},
        alert_ids=[a["alert_id"]["StringValue"] for _, a in drain_bodies(sqs, outputs["AlertInboxUrl"])],
        quarantined=[
            (body["sequence_number"], body["field"])
            for body, _ in drain_bodies(sqs, outputs["QuarantineQueueUrl"])
        ],
        on_failure=[body for body, _ in drain_bodies(sqs, outputs["OnFailureQueueUrl"])],
        stats=stats,
        sequence_numbers=sequence_numbers,
    )


@pytest.fixture(scope="module")
def clean(cloud: None, entries: list[dict[str, Any]], tiny_bundle: Path) -> Run:
    run, _, _ = consume("clean", entries, tiny_bundle)
    assert run.stats.retries == 0
    return run


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_under_faults_every_record_is_decided_alerted_and_quarantined_exactly_once(
    clean: Run, entries: list[dict[str, Any]], tiny_bundle: Path, rate: float
):
    assert TEMPLATE_MAPPING.maximum_retry_attempts == UNLIMITED  # the template retries until decided
    run, injector, _ = consume(f"faulty-{int(rate * 100)}", entries, tiny_bundle, rate)

    assert sum(injector.injected.values()) >= rate * sum(injector.calls.values()) / 2  # faults did happen
    assert run.on_failure == []  # retried until done: nothing given up
    assert len(clean.decisions) == RECORDS
    assert run.decisions.keys() == clean.decisions.keys()  # nothing lost, nothing invented
    different = [k for k in clean.decisions if run.decisions[k] != clean.decisions[k]]
    assert different == []  # decision, score, reasons, model version: item by item
    assert run.profiles == clean.profiles  # each transaction applied exactly once
    assert len(clean.alert_ids) == len(set(clean.alert_ids)) > 0
    assert sorted(run.alert_ids) == sorted(clean.alert_ids)  # every alert received, none twice
    assert len(clean.quarantined) == len(set(clean.quarantined)) == RECORDS // MALFORMED_EVERY
    assert sorted(run.quarantined) == sorted(clean.quarantined)  # every malformed record kept once
    print(  # the figures docs/reliability.md records
        f"faults {rate:.0%}: {sum(injector.calls.values())} calls, {sum(injector.injected.values())} "
        f"injected {dict(injector.injected)}; {run.stats.invocations} invocations, {run.stats.retries} "
        f"retries, {run.stats.bisections} bisections; {len(run.decisions)} decisions, {len(run.profiles)} "
        f"profiles, {len(run.alert_ids)} alerts, {len(run.quarantined)} quarantined, as the clean run"
    )


def test_with_a_retry_limit_what_is_given_up_is_named_then_redriven(
    clean: Run, entries: list[dict[str, Any]], tiny_bundle: Path
):
    """With a retry limit of an operator's choosing (here 2) and an outage (DynamoDB writes refused for
    good, as by a broken IAM policy, for the first 12 calls), batches are given up: the on-failure
    queue names them (the stream keeps its records 24 h), and a redrive decides them. Their users' later
    payments were scored without them: that effect is counted here, and confined to those users."""
    two_retries = replace(TEMPLATE_MAPPING, maximum_retry_attempts=2)
    run, _, handler = consume("two-retries", entries, tiny_bundle, outage_calls=12, settings=two_retries)
    assert run.on_failure, "the outage outlasts 2 retries, so a batch is given up"

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

    outputs = run.outputs
    sqs = boto3.client("sqs")
    for message in run.on_failure:  # drained by the run: put back for the redrive to read
        sqs.send_message(QueueUrl=outputs["OnFailureQueueUrl"], MessageBody=json.dumps(message))
    service = inspect.unwrap(handler).__globals__["service"]
    stats = redrive(service, kinesis=boto3.client("kinesis"), sqs=sqs, queue_url=outputs["OnFailureQueueUrl"])
    assert stats.kept == 0

    after = collect(outputs, run.stats, run.sequence_numbers)
    assert after.decisions.keys() == clean.decisions.keys()  # every valid record decided, none twice
    given_up_users = {
        json.loads(entry["Data"])["user_id"]
        for entry, sequence in zip(entries, run.sequence_numbers, strict=True)
        if entry["PartitionKey"] != "bad" and run.given_up(sequence)
    }
    differ = {k for k in clean.decisions if after.decisions[k] != clean.decisions[k]}
    users_of = {k: v["user_id"]["S"] for k, v in clean.decisions.items()}
    assert {users_of[k] for k in differ} <= given_up_users  # the skew stays with the given-up users
    skewed = {u for u in after.profiles if after.profiles[u] != clean.profiles[u]}
    assert skewed <= given_up_users
    print(
        f"given up: {stats.records} records of {len(given_up_users)} users; after redrive "
        f"{len(differ)} of {RECORDS} decisions and {len(skewed)} profiles differ from the clean run"
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
    assert json.loads(stored_state(profile))["n"] == 9  # applied once, though processed twice


# ---------------------------------------------------------------- a crash at each step of a batch


def usual_record(event: dict[str, Any]) -> dict[str, Any]:
    """The payload of an event's first record."""
    return dict(json.loads(base64.b64decode(event["Records"][0]["kinesis"]["data"])))


def mixed_batch() -> dict[str, Any]:
    """The fraud batch (one REJECTED), a label of its merchant known an hour ago, and a malformed record."""
    event = fraud_batch()
    label = label_body("tx-earlier", "merch-1", True, (START + timedelta(hours=5)).isoformat())
    last = event["Records"][-1]["kinesis"]
    arrival = float(last["approximateArrivalTimestamp"])
    extra = event_from_payloads(
        [
            (json.dumps(label).encode(), "merch-1", arrival),
            (
                json.dumps({**usual_record(event), "transaction_id": "tx-bad", "amount": -1}).encode(),
                "u",
                arrival,
            ),
        ],
        first_sequence=len(event["Records"]) + 1,
    )
    return {"Records": event["Records"] + extra["Records"]}


# (service, operation, table the call writes or None for any, "before" or "after" the call)
CRASH_POINTS = [
    ("dynamodb", "BatchGetItem", None, "before"),
    ("dynamodb", "BatchGetItem", None, "after"),
    ("sqs", "SendMessageBatch", None, "after"),
    ("dynamodb", "BatchWriteItem", "DecisionsTableName", "after"),
    ("sns", "PublishBatch", None, "before"),
    ("sns", "PublishBatch", None, "after"),
    ("dynamodb", "TransactWriteItems", "ProfilesTableName", "before"),
    ("dynamodb", "TransactWriteItems", "ProfilesTableName", "after"),
    ("dynamodb", "BatchWriteItem", "MerchantProfilesTableName", "after"),
]


def crash_at(service: Any, outputs: dict[str, str], point: tuple[str, str, str | None, str]) -> list[str]:
    """Make the process die at one point of the batch: before a call is sent, or once its effect landed
    (the response never reaches the code). Returns a list that gets an entry when it did."""
    name, operation, table_output, when = point
    client = {"dynamodb": service._profiles._client, "sns": service._alerts._client}.get(
        name, service._quarantine._client
    )
    crashed: list[str] = []

    def arm(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        written = {
            *params.get("RequestItems", {}),
            *(a["Put"]["TableName"] for a in params.get("TransactItems", [])),
        }
        if not crashed and (table_output is None or outputs[table_output] in written):
            context["fraudwatch_crash"] = True

    def before(context: dict[str, Any], **kwargs: Any) -> None:
        if when == "before" and context.pop("fraudwatch_crash", False):
            crashed.append(operation)
            raise ContainerKilled

    def after(context: dict[str, Any], **kwargs: Any) -> None:
        if context.pop("fraudwatch_crash", False):
            crashed.append(operation)
            raise ContainerKilled

    client.meta.events.register(f"before-parameter-build.{name}.{operation}", arm)
    client.meta.events.register(f"before-call.{name}.{operation}", before)
    client.meta.events.register(f"after-call.{name}.{operation}", after)
    return crashed


def final_state(outputs: dict[str, str]) -> dict[str, Any]:
    """Everything a batch leaves behind, without wall-clock attributes; messages as received, in order."""
    dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    return {
        "decisions": {
            k: comparable(v)
            for k, v in scan(dynamodb, outputs["DecisionsTableName"], "transaction_id").items()
        },
        "profiles": {
            k: stored_state(v) for k, v in scan(dynamodb, outputs["ProfilesTableName"], "user_id").items()
        },
        "merchants": {
            k: stored_state(v)
            for k, v in scan(dynamodb, outputs["MerchantProfilesTableName"], "merchant_id").items()
        },
        "alerts": [
            (a["alert_id"]["StringValue"], {k: v for k, v in body.items() if k != "decided_at"})
            for body, a in drain_bodies(sqs, outputs["AlertInboxUrl"])
        ],
        "quarantined": [body for body, _ in drain_bodies(sqs, outputs["QuarantineQueueUrl"])],
    }


@pytest.fixture(scope="module")
def clean_batch_state(cloud: None, tiny_bundle: Path) -> dict[str, Any]:
    outputs = build_stack("crash-clean")
    assert load(outputs, tiny_bundle)(mixed_batch(), LocalContext()) == {"batchItemFailures": []}
    state = final_state(outputs)
    assert [alert_id for alert_id, _ in state["alerts"]] == ["tx-crash-big"]
    assert [q["field"] for q in state["quarantined"]] == ["amount"]
    assert json.loads(state["merchants"]["merch-1"])  # the label was counted
    return state


@pytest.mark.parametrize("point", CRASH_POINTS, ids=lambda p: f"{p[3]}-{p[1]}-{p[2] or 'any'}")
def test_a_crash_at_any_step_then_redelivery_leaves_the_state_of_one_clean_delivery(
    cloud: None, tiny_bundle: Path, clean_batch_state: dict[str, Any], point: tuple[str, str, str | None, str]
):
    outputs = build_stack(f"crash-{point[3]}-{point[1]}-{point[2] or 'any'}")
    handler = load(outputs, tiny_bundle)
    crashed = crash_at(inspect.unwrap(handler).__globals__["service"], outputs, point)
    with pytest.raises(ContainerKilled):
        handler(mixed_batch(), LocalContext())
    assert crashed == [point[1]]

    # The container is gone; Lambda retries the whole batch in a new one.
    assert load(outputs, tiny_bundle)(mixed_batch(), LocalContext()) == {"batchItemFailures": []}

    assert final_state(outputs) == clean_batch_state
