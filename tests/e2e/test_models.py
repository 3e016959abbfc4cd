"""Model operations end to end on a stack of their own (the emulator's, the template deployed again):
publish, challenge, promote and roll back with `fraudwatch models`, each in force for the next batch with
no deploy; compare the two versions; the matured labels' metrics from labels that came on the stream; and
the scheduled drift step (ModelOpsFunction's real handler) on unshifted and on shifted (amounts x3)
traffic.

The functions' lineup cache is 0 s here (15 s in the template), the drift windows 10 s (900) and measured
as soon as they close (2 minutes after), so the test waits seconds, not minutes. moto evaluates no alarm:
the alarm's own definition (statistic, threshold, comparison, periods and datapoints to alarm) is applied
to the metric the drift step published, with the test's window as its period.
"""

import json
import os
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from fraudwatch.adapters.bundle import MODEL_FILE, THRESHOLDS_FILE, save_bundle
from fraudwatch.adapters.dynamodb import decision_of
from fraudwatch.domain.decision import DecisionRecord, Thresholds
from fraudwatch.domain.drift import reference_of
from fraudwatch.domain.features import ACTIVITY_FEATURES, FEATURE_NAMES, NO_ACTIVITY
from infra.cli import main
from infra.embedded import start_ops
from infra.emulator import emulator_environment
from infra.events import event_from_labels, event_from_transactions
from infra.http_event import http_api_event
from infra.invoke import Handler, LocalContext
from infra.producer import live_transactions, scaled_amounts
from tests.e2e.conftest import Embedded, deployed, loaded
from training.features import compute_features

WINDOW_S = 10
BATCH = 100
WARM_UP = 600
"""Transactions of a run before its measured windows: its users have histories by then."""
PER_WINDOW = 200
SEED = 11
NOW = datetime.now(UTC).replace(microsecond=0)
"""Where the generated streams end: the reference's and every run's are the same transactions."""


@dataclass
class ModelsStack:
    embedded: Embedded
    handler: Handler
    api_handler: Handler
    ops_handler: Handler
    """ModelOpsFunction's: what its schedules invoke with {"job": "drift"} and {"job": "matured"}."""
    outputs_file: str

    def pay(self, transactions: list[dict[str, Any]], first: int) -> list[DecisionRecord]:
        """One batch through the stream's handler; the stored decisions, in order."""
        response = self.handler(event_from_transactions(transactions, first_sequence=first), LocalContext())
        assert response == {"batchItemFailures": []}
        return [self.decision(tx["transaction_id"]) for tx in transactions]

    def decision(self, transaction_id: str) -> DecisionRecord:
        item = self.embedded.client("dynamodb").get_item(
            TableName=self.embedded.outputs["DecisionsTableName"],
            Key={"transaction_id": {"S": transaction_id}},
            ConsistentRead=True,
        )["Item"]
        return decision_of(item)

    def models(self, *args: str) -> int:
        return main(["models", *args, "--outputs", self.outputs_file])


def _load(embedded: Embedded, bundle: Path, function: str) -> Handler:
    settings = {
        "MODELS_MAX_AGE_SECONDS": "0",
        "MODEL_CACHE_DIR": str(bundle.parent / f"cache-{function}"),
        "DRIFT_WINDOW_SECONDS": str(WINDOW_S),
        "DRIFT_FLUSH_SECONDS": "0",
        # the ops function's: windows measured once closed (flushed at once here), days once labelled
        "DRIFT_SETTLE_SECONDS": "0",
        "DRIFT_MIN_ROWS": str(PER_WINDOW // 2),
        "LABEL_DELAY_DAYS": "0",
    }
    return loaded(embedded.outputs, bundle, embedded.endpoint_url, function, settings)


@pytest.fixture(scope="module")
def models_stack(
    embedded: Embedded, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> ModelsStack:
    """The template deployed again as `fraudwatch-models`, its handlers loaded with the tiny bundle."""
    stack = deployed(embedded.endpoint_url, "models", tiny_bundle)
    layer = shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("layer") / "bundle")
    outputs_file = tmp_path_factory.mktemp("state") / "stack.json"
    outputs_file.write_text(json.dumps({"outputs": stack.outputs, "endpoint_url": stack.endpoint_url}))
    return ModelsStack(
        stack,
        _load(stack, layer, "ScoringFunction"),
        _load(stack, layer, "ScoringApiFunction"),
        _load(stack, layer, "ModelOpsFunction"),
        str(outputs_file),
    )


def _payment(n: int, user: str, amount: float) -> dict[str, Any]:
    return {
        "transaction_id": f"{user}-tx-{n}",
        "user_id": user,
        "merchant_id": "merch-models-e2e",
        "amount": amount,
        "currency": "EUR",
        "timestamp": datetime.now(UTC).isoformat(),
        "category": "electronics",
    }


def test_promote_and_rollback_take_effect_for_the_next_batch_and_compare_shows_both(
    models_stack: ModelsStack, tiny_challenger: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, sent = models_stack, [0]

    def pay(amount: float = 12.5, user: str = "user-models-e2e") -> DecisionRecord:
        sent[0] += 1
        (decided,) = stack.pay([_payment(sent[0], user, amount)], first=sent[0])
        return decided

    assert pay().model_version == "tiny-test-1"  # the layer's bundle: no champion named yet
    assert stack.models("publish", str(tiny_challenger)) == 0
    assert stack.models("challenge", "tiny-test-2", "--note", "shadow it") == 0
    shadowed = pay()
    assert shadowed.model_version == "tiny-test-1"
    assert shadowed.challenger is not None
    assert shadowed.challenger.model_version == "tiny-test-2"

    posted = {**_payment(1, "user-models-api", 30.0), "transaction_id": "models-api-1"}
    event = http_api_event(
        "POST",
        "/v1/transactions",
        headers={"content-type": "application/json"},
        body=json.dumps(posted).encode(),
    )
    answer = stack.api_handler(event, LocalContext())
    assert answer["statusCode"] == 200
    assert "challenger" not in json.loads(answer["body"])  # the payer never sees the shadow's verdict
    api_decided = stack.decision("models-api-1").challenger
    assert api_decided is not None
    assert api_decided.model_version == "tiny-test-2"

    # a history to compare on: big amounts are the frauds the tiny models learnt
    batch = [_payment(100 + i, f"user-compare-{i % 40}", 3000.0 if i % 5 == 0 else 20.0) for i in range(120)]
    stack.pay(batch, first=1000)
    labels = pd.DataFrame(
        [{**tx, "is_fraud": tx["amount"] > 2000} for tx in batch]
    )  # fmt: skip
    labels.to_csv(tmp_path / "labels.csv", index=False)
    capsys.readouterr()
    assert stack.models("compare", "--labels", str(tmp_path / "labels.csv"), "--label-delay-days", "0") == 0
    report = capsys.readouterr().out
    assert "champion tiny-test-1 vs challenger tiny-test-2" in report
    assert "| ROC AUC |" in report
    assert "| decision mix | champion tiny-test-1 | challenger tiny-test-2 |" in report
    assert "On 120 matured labels (24 fraud)" in report
    tomorrow = datetime.fromtimestamp(time.time() + 86400, UTC).isoformat()
    assert stack.models("matured", "--labels", str(tmp_path / "labels.csv"), "--label-delay-days", "0",
                        "--now", tomorrow) == 0  # fmt: skip
    (today,) = capsys.readouterr().out.splitlines()
    assert "120 labelled, 24 fraud" in today
    published = stack.embedded.client("cloudwatch").get_metric_statistics(
        Namespace="Fraudwatch",
        MetricName="MaturedRecall",
        Dimensions=[{"Name": "service", "Value": "fraudwatch"}],
        StartTime=datetime.fromtimestamp(time.time() - 2 * 86400, UTC),
        EndTime=datetime.now(UTC),
        Period=86400,
        Statistics=["Minimum"],
    )["Datapoints"]
    reported = float(today.split("recall ")[1].split("%")[0]) / 100
    assert [round(point["Minimum"], 3) for point in published] == [round(reported, 3)]

    # the same verdicts as labels on the stream, put twice (a redelivery): the daily run reads them
    verdicts = [{**tx, "is_fraud": tx["amount"] > 2000} for tx in batch]
    for first in (5000, 5000):
        labelled = stack.handler(
            event_from_labels(verdicts, delay_s=60, first_sequence=first), LocalContext()
        )
        assert labelled == {"batchItemFailures": []}
    run = stack.ops_handler({"job": "matured", "time": tomorrow}, LocalContext("ModelOpsFunction"))
    (day,) = run["days"]
    assert (day["labelled"], day["frauds"]) == (120, 24)
    assert round(day["recall"], 3) == round(reported, 3)

    assert stack.models("promote", "--note", "better on matured labels") == 0
    promoted = pay()
    assert (promoted.model_version, promoted.challenger) == ("tiny-test-2", None)
    assert promoted.thresholds == Thresholds(0.4, 0.8)  # the promoted version's own

    assert stack.models("rollback", "--note", "regression") == 0
    assert pay().model_version == "tiny-test-1"
    capsys.readouterr()
    assert stack.models("history") == 0
    history = capsys.readouterr().out
    assert [line.split(": ", 1)[1].split(" -> ")[0] for line in history.splitlines()] == [
        "challenge",
        "promote",
        "rollback",
    ]


# ---------------------------------------------------------------- drift


def _stream(count: int) -> list[dict[str, Any]]:
    return list(live_transactions(count, SEED, now=NOW))


@pytest.fixture(scope="module")
def drift_champion(
    models_stack: ModelsStack, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny model with a reference measured on the traffic the runs send (the same generator and
    seed, features replayed offline with the Lambda's code), published and promoted: `tiny-drift-1`."""
    transactions = _stream(WARM_UP + 2 * PER_WINDOW)
    features = compute_features(pd.DataFrame(transactions), label_delay=None).values[WARM_UP:]
    # The stack runs no daily count of the merchants' payments, so its merchants have no activity
    # features; the offline replay counts them from the file. The reference is the traffic as scored.
    features[:, [FEATURE_NAMES.index(name) for name in ACTIVITY_FEATURES]] = NO_ACTIVITY
    booster = xgb.Booster(model_file=str(tiny_bundle / MODEL_FILE))
    scores = booster.inplace_predict(features.astype(np.float32))
    reference = reference_of(features, scores, ("amount", "amount_zscore"))
    bundle = tmp_path_factory.mktemp("drift") / "bundle"
    bundle.mkdir()
    thresholds = json.loads((tiny_bundle / THRESHOLDS_FILE).read_text())
    save_bundle(bundle, booster, thresholds, {"version": "tiny-drift-1", "reference": reference.to_dict()})
    assert models_stack.models("publish", str(bundle)) == 0
    assert models_stack.models("promote", "tiny-drift-1") == 0
    return bundle


def _run(stack: ModelsStack, name: str, amount_factor: float, first: int) -> float:
    """A run's warm-up, then two windows of traffic (amounts times `amount_factor`); returns when the
    second window has closed, with the start of the first."""
    transactions = [
        {**tx, "user_id": f"{name}-{tx['user_id']}", "transaction_id": f"{name}-{tx['transaction_id']}"}
        for tx in _stream(WARM_UP + 2 * PER_WINDOW)
    ]
    for at in range(0, WARM_UP, BATCH):
        stack.pay(transactions[at : at + BATCH], first=first + at)
    measured = list(scaled_amounts(transactions[WARM_UP:], amount_factor))
    # Each window gets whole users, alternately: a user's payments stay in time order, and both windows
    # span the same hours as the reference. Halves in time would not: the first half of a time-ordered
    # stream is another part of the day, whose hours and weekly counts drift from the whole's.
    users = sorted({tx["user_id"] for tx in measured})
    windows = [[tx for tx in measured if users.index(tx["user_id"]) % 2 == w] for w in range(2)]
    start = _next_window()
    for window, paid in enumerate(windows):
        _sleep_until(start + window * WINDOW_S)
        for at in range(0, len(paid), BATCH):
            stack.pay(paid[at : at + BATCH], first=first + WARM_UP + window * len(measured) + at)
        assert time.time() < start + (window + 1) * WINDOW_S, (
            "a window's traffic overran it: the test is slow"
        )
    _sleep_until(start + 2 * WINDOW_S)
    return start


def _next_window() -> float:
    return (time.time() // WINDOW_S + 1) * WINDOW_S


def _sleep_until(moment: float) -> None:
    time.sleep(max(moment - time.time(), 0.0))


def _drift(stack: ModelsStack) -> dict[str, Any]:
    """What the drift schedule's run measured and published (`{"job": "drift"}`, ModelOpsFunction)."""
    result: dict[str, Any] = stack.ops_handler({"job": "drift"}, LocalContext("ModelOpsFunction"))
    return result


def _alarm_fires(stack: ModelsStack, logical_id: str, since: float) -> bool:
    """The alarm's definition applied to the datapoints published since `since` (WINDOW_S periods)."""
    cloudwatch = stack.embedded.client("cloudwatch")
    (alarm,) = cloudwatch.describe_alarms(AlarmNames=[f"fraudwatch-models-{logical_id}"])["MetricAlarms"]
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    points = cloudwatch.get_metric_statistics(
        Namespace=alarm["Namespace"],
        MetricName=alarm["MetricName"],
        Dimensions=alarm["Dimensions"],
        StartTime=datetime.fromtimestamp(since, UTC),
        EndTime=datetime.fromtimestamp(time.time() + 1, UTC),
        Period=WINDOW_S,
        Statistics=[alarm["Statistic"]],
    )["Datapoints"]
    values = [p[alarm["Statistic"]] for p in sorted(points, key=lambda p: p["Timestamp"])]
    assert len(values) == alarm["EvaluationPeriods"] == 2
    breaching = sum(value >= alarm["Threshold"] for value in values[-alarm["EvaluationPeriods"] :])
    return bool(breaching >= alarm["DatapointsToAlarm"])


def test_shifted_traffic_raises_the_drift_alarms_within_two_windows_and_unshifted_raises_none(
    models_stack: ModelsStack, drift_champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calm = _run(models_stack, "calm", 1.0, first=10_000)
    measured = _drift(models_stack)
    assert measured["model_version"] == "tiny-drift-1"
    assert [w["start"] for w in measured["windows"]] == [calm, calm + WINDOW_S]
    assert measured["drifting"] == [], measured
    assert not _alarm_fires(models_stack, "ScoreDriftAlarm", calm)
    assert not _alarm_fires(models_stack, "FeatureDriftAlarm", calm)

    shifted = _run(models_stack, "hot", 3.0, first=20_000)
    measured = _drift(models_stack)
    assert [w["start"] for w in measured["windows"]] == [shifted, shifted + WINDOW_S]
    assert {"score", "amount"} <= set(measured["drifting"]) <= {"score", "amount", "amount_zscore"}, measured
    assert _alarm_fires(models_stack, "ScoreDriftAlarm", shifted)
    assert _alarm_fires(models_stack, "FeatureDriftAlarm", shifted)

    # the command line's report of the same windows names the same features
    capsys.readouterr()
    at = datetime.fromtimestamp(shifted + 2 * WINDOW_S, UTC).isoformat()
    options = ["--window-seconds", str(WINDOW_S), "--min-rows", str(PER_WINDOW // 2), "--settle-seconds", "0"]
    assert models_stack.models("drift", *options, "--cache", str(tmp_path), "--now", at) == 0
    report = capsys.readouterr().out
    assert report.splitlines()[-1] == f"drifting: {', '.join(measured['drifting'])}", report


JOBS = {"drift": "DriftWindowsMeasured", "matured": "MaturedDaysMeasured", "activity": "ActivityRecordsPut"}
"""ModelOpsFunction's jobs, by the metric each run emits."""


def test_the_embedded_stack_runs_the_model_operations_function_on_its_schedules(
    models_stack: ModelsStack,
    tiny_bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    restore_environ: None,
) -> None:
    """What `stack up` and `demo` start beside the stream's runner (moto runs no EventBridge schedule):
    the real handler, each job every `ops_every` seconds here (the template's schedules by default)."""
    stop = threading.Event()
    stack = models_stack.embedded
    os.environ.update(emulator_environment(stack.endpoint_url))  # as `stack up` does for its process
    capsys.readouterr()
    # its own cache: a bundle cached by another run under the same test version may be of other code
    thread = start_ops(stack.outputs, stack.endpoint_url, tiny_bundle, stop, every=0.5, cache_dir=tmp_path)
    runs: Counter[str] = Counter()
    deadline = time.monotonic() + 30
    while min(runs[job] for job in JOBS) < 3 and time.monotonic() < deadline:  # each job, again and again
        time.sleep(0.5)
        for line in capsys.readouterr().out.splitlines():
            if '"_aws"' in line:
                runs.update(job for job, metric in JOBS.items() if metric in json.loads(line))
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert min(runs[job] for job in JOBS) >= 3, runs
