"""The model operations function's real handler (ModelOpsFunction), on moto: drift of the champion's
windows and the matured days' recall and precision, published as the metrics the alarms watch."""

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from fraudwatch.adapters.bundle import CARD_FILE, read_bundle
from fraudwatch.adapters.drift import DriftStore
from fraudwatch.adapters.dynamodb import DynamoDecisionStore, DynamoProfileStore
from fraudwatch.adapters.registry import ModelRegistry
from fraudwatch.domain.decision import Decision, DecisionRecord, Thresholds
from fraudwatch.domain.drift import BINS, COLUMNS, SCORE, Reference
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.label import Label
from infra.invoke import Handler, LocalContext, load_handler
from infra.models import promote

W0 = int(datetime(2026, 11, 20, 9, 0, tzinfo=UTC).timestamp())
WINDOW = 900
DAY = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture
def ops(stack, tiny_bundle, tmp_path, restore_environ) -> Handler:
    return load_handler(
        stack,
        bundle_dir=tiny_bundle,
        function="ModelOpsFunction",
        overrides={"MODEL_CACHE_DIR": str(tmp_path / "cache")},
    )


def run(ops: Handler, job: str, at: datetime) -> dict[str, Any]:
    result: dict[str, Any] = ops({"job": job, "time": at.isoformat()}, LocalContext("ModelOpsFunction"))
    return result


def like_training(reference: Reference, rows: int = 1000) -> np.ndarray:
    """Counts of a window whose every column has its training shares."""
    return np.rint(reference.shares * rows).astype(np.int64)


def shifted(reference: Reference, rows: int = 1000) -> np.ndarray:
    """Counts of a window whose amounts and scores all fall in their top bin (amounts x3 does that)."""
    counts = like_training(reference, rows)
    for name in ("amount", SCORE):
        column = COLUMNS.index(name)
        counts[column] = 0
        counts[column, BINS - 1] = rows
    return counts


def points(metric: str, since: datetime, dimensions: list[dict[str, str]] | None = None) -> list[float]:
    cloudwatch: Any = boto3.client("cloudwatch")
    found = cloudwatch.get_metric_statistics(
        Namespace="Fraudwatch",
        MetricName=metric,
        Dimensions=dimensions or [{"Name": "service", "Value": "fraudwatch"}],
        StartTime=since,
        EndTime=since + timedelta(days=2),
        Period=WINDOW,
        Statistics=["Maximum"],
    )["Datapoints"]
    return [p["Maximum"] for p in sorted(found, key=lambda p: p["Timestamp"])]


def test_shifted_windows_publish_the_psi_the_drift_alarms_fire_on_and_unshifted_ones_do_not(
    ops, stack, tiny_bundle
):
    reference = read_bundle(tiny_bundle).reference
    assert reference is not None
    store = DriftStore(stack["DriftTableName"])
    for window in (W0, W0 + WINDOW):
        store.add("tiny-test-1", window, "container-a#1", like_training(reference, 600), 0)
        store.add("tiny-test-1", window, "container-b#1", like_training(reference, 400), 0)
    for window in (W0 + 2 * WINDOW, W0 + 3 * WINDOW):
        store.add("tiny-test-1", window, "container-a#2", shifted(reference), 0)

    calm = run(ops, "drift", datetime.fromtimestamp(W0 + 2 * WINDOW + 120, UTC))
    assert (calm["model_version"], calm["drifting"]) == ("tiny-test-1", [])  # the layer's bundle
    assert [(w["start"], w["rows"]) for w in calm["windows"]] == [(W0, 1000), (W0 + WINDOW, 1000)]
    start = datetime.fromtimestamp(W0, UTC)
    assert len(points("ScorePSI", start)) == 2
    assert max(points("ScorePSI", start)) < 0.2

    # at 10:01, the 09:45 window closed a minute ago: the two before it, one calm, one shifted
    early = run(ops, "drift", datetime.fromtimestamp(W0 + 4 * WINDOW + 60, UTC))
    assert [w["start"] for w in early["windows"]] == [W0 + WINDOW, W0 + 2 * WINDOW]
    assert early["drifting"] == []  # one window is no alarm
    hot = run(ops, "drift", datetime.fromtimestamp(W0 + 4 * WINDOW + 120, UTC))
    assert hot["drifting"] == ["score", "amount"]
    hot_start = datetime.fromtimestamp(W0 + 2 * WINDOW, UTC)
    assert all(value >= 0.2 for value in points("ScorePSI", hot_start))
    assert len(points("TopFeaturePSI", hot_start)) == 2
    assert min(points("TopFeaturePSI", hot_start)) >= 0.2
    velocity = [{"Name": "service", "Value": "fraudwatch"}, {"Name": "feature", "Value": "velocity_1h"}]
    assert max(points("FeaturePSI", hot_start, velocity)) < 0.05  # an untouched feature stays put
    assert len(FEATURE_NAMES) + 2 == len(
        {
            (m["MetricName"], str(m["Dimensions"]))
            for m in boto3.client("cloudwatch").list_metrics(Namespace="Fraudwatch")["Metrics"]
        }
    )


def test_drift_is_measured_for_the_registrys_champion(ops, stack, tiny_challenger):
    registry = ModelRegistry(stack["ModelsBucketName"], stack["ModelsTableName"])
    registry.publish(tiny_challenger, published_by="test", now=1.0)
    promote(registry, "tiny-test-2", by="test", note="", now=2.0)
    reference = read_bundle(tiny_challenger).reference
    assert reference is not None
    store = DriftStore(stack["DriftTableName"])
    store.add("tiny-test-1", W0, "old-champion#1", shifted(reference), 0)  # no longer the champion's
    store.add("tiny-test-2", W0, "container-a#1", like_training(reference), 0)

    result = run(ops, "drift", datetime.fromtimestamp(W0 + WINDOW + 120, UTC))

    assert result["model_version"] == "tiny-test-2"
    assert [(w["start"], w["rows"]) for w in result["windows"]] == [(W0, 1000)]
    assert result["windows"][0]["score_psi"] < 0.05


def decision(n: int, at: datetime, kind: Decision) -> DecisionRecord:
    return DecisionRecord(
        f"tx-{n}", f"user-{n}", "merch-1", 10.0, "EUR", at.isoformat(), kind, 0.5, "tiny-test-1",
        Thresholds(0.5, 0.9), (at + timedelta(seconds=1)).isoformat(),
    )  # fmt: skip


def label(n: int, fraud: bool, known: datetime) -> Label:
    return Label(f"tx-{n}", "merch-1", fraud, known.isoformat(), known.timestamp())


def test_the_daily_run_publishes_the_matured_days_recall_and_precision_from_the_stored_labels(ops, stack):
    noon = DAY + timedelta(hours=12)
    kinds = [Decision.REJECTED, Decision.APPROVED, Decision.FLAGGED, Decision.APPROVED, Decision.APPROVED]
    DynamoDecisionStore(stack["DecisionsTableName"]).put_many(
        [decision(n, noon, k) for n, k in enumerate(kinds)]
    )
    later = [decision(9, noon + timedelta(days=5), Decision.REJECTED)]  # too recent to have matured
    DynamoDecisionStore(stack["DecisionsTableName"]).put_many(later)
    known = DAY + timedelta(days=2)
    store = DynamoProfileStore(
        stack["ProfilesTableName"],
        stack["MerchantProfilesTableName"],
        labels_table_name=stack["LabelsTableName"],
    )
    store.put_merchants([], [label(0, True, known), label(1, True, known), label(2, False, known)])
    store.put_merchants(
        [], [label(3, False, known), label(3, True, known + timedelta(days=1))]
    )  # charged back
    store.put_merchants([], [label(0, True, known), label(9, True, known)])  # put again; a young day's

    result = run(ops, "matured", DAY + timedelta(days=8, hours=1))  # day 0 is 7 days old: matured

    ((day),) = result["days"]
    assert day["day"] == DAY.timestamp()
    # tx-0 fraud caught, tx-1 fraud missed, tx-2 genuine alerted, tx-3 fraud missed; tx-4 unlabelled
    assert (day["labelled"], day["frauds"], day["alerts"]) == (4, 3, 2)
    assert day["recall"] == pytest.approx(1 / 3)
    assert day["precision"] == 0.5
    published = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="Fraudwatch",
        MetricName="MaturedRecall",
        Dimensions=[{"Name": "service", "Value": "fraudwatch"}],
        StartTime=DAY - timedelta(days=1),
        EndTime=DAY + timedelta(days=9),
        Period=86400,
        Statistics=["Minimum"],
    )["Datapoints"]
    assert [(p["Timestamp"], round(p["Minimum"], 4)) for p in published] == [(DAY, round(1 / 3, 4))]


def test_an_unknown_job_fails_the_invocation_naming_the_jobs(ops):
    with pytest.raises(ValueError, match="drift, matured"):
        ops({"job": "retrain"}, LocalContext("ModelOpsFunction"))


def test_a_champion_without_a_reference_publishes_nothing_and_says_so(
    stack, tmp_path, tiny_bundle, restore_environ
):
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "made-before-drift"))
    card = json.loads((bundle / CARD_FILE).read_text())
    del card["reference"]
    (bundle / CARD_FILE).write_text(json.dumps(card))
    ops = load_handler(stack, bundle_dir=bundle, function="ModelOpsFunction")

    result = run(ops, "drift", datetime.fromtimestamp(W0 + WINDOW + 120, UTC))

    assert (result["has_reference"], result["windows"]) == (False, [])
    assert boto3.client("cloudwatch").list_metrics(Namespace="Fraudwatch")["Metrics"] == []
