"""`fraudwatch models matured|compare|run-ops` on the labels the stream brought (LabelsTable), on moto."""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fraudwatch.adapters.dynamodb import DynamoDecisionStore, DynamoProfileStore
from fraudwatch.domain.decision import Decision, DecisionRecord, ShadowVerdict, Thresholds
from fraudwatch.domain.label import Label
from infra.cli import main
from tests.adapters.conftest import REGION

DAY = datetime(2026, 11, 20, tzinfo=UTC)
MATURED = (DAY + timedelta(days=8, hours=1)).isoformat()  # day 0 is 7 days old


@pytest.fixture
def outputs_file(stack, tmp_path: Path) -> str:
    """The stack's outputs as `stack up` records them, with the decisions and labels of one day."""
    noon = DAY + timedelta(hours=12)
    kinds = [Decision.REJECTED, Decision.APPROVED, Decision.FLAGGED, Decision.APPROVED]
    DynamoDecisionStore(stack["DecisionsTableName"]).put_many(
        [
            DecisionRecord(
                f"tx-{n}",
                "user-1",
                "merch-1",
                10.0,
                "EUR",
                noon.isoformat(),
                kind,
                0.95 if n == 0 else 0.6,
                "champ-1",
                Thresholds(0.5, 0.9),
                noon.isoformat(),
                challenger=ShadowVerdict("chall-2", 0.9 if n < 2 else 0.1, Decision.REJECTED),
            )
            for n, kind in enumerate(kinds)
        ]
    )
    known = DAY + timedelta(days=2)
    labels = [Label(f"tx-{n}", "merch-1", n < 2, known.isoformat(), known.timestamp()) for n in range(4)]
    profiles = DynamoProfileStore(
        stack["ProfilesTableName"],
        stack["MerchantProfilesTableName"],
        labels_table_name=stack["LabelsTableName"],
    )
    profiles.put_merchants([], labels)
    path = tmp_path / "stack.json"
    path.write_text(json.dumps({"outputs": stack}))
    return str(path)


def test_matured_reads_the_stored_labels_by_default(outputs_file, capsys):
    assert main(["models", "matured", "--now", MATURED, "--outputs", outputs_file]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "2026-11-20: 4 labelled, 2 fraud, 2 alerted; recall 50.0%, precision 50.0%"
    ]


def test_compare_reads_the_stored_labels_by_default(outputs_file, capsys):
    assert main(["models", "compare", "--label-delay-days", "0", "--outputs", outputs_file]) == 0
    assert "On 4 matured labels (2 fraud):" in capsys.readouterr().out


def test_run_ops_knows_the_functions_jobs():
    from fraudwatch.model_ops import JOBS
    from infra.models import OPS_JOBS

    assert OPS_JOBS == JOBS


def test_run_ops_invokes_the_scheduled_functions_handler_once_per_job(
    outputs_file, tiny_bundle, tmp_path, capsys, restore_environ
):
    options = ["--now", MATURED, "--layer-bundle", str(tiny_bundle), "--cache", str(tmp_path / "cache")]
    assert main(["models", "run-ops", *options, "--outputs", outputs_file]) == 0
    drift, matured, activity = (
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"job"')
    )
    assert (drift["job"], drift["model_version"], drift["windows"]) == ("drift", "tiny-test-1", [])
    assert matured["job"] == "matured"
    assert [(d["labelled"], d["frauds"], d["recall"]) for d in matured["days"]] == [(4, 2, 0.5)]
    assert activity == {"job": "activity", "records": 0, "days": []}  # day 0 is past the 7 recounted

    options[1] = (DAY + timedelta(days=1, minutes=5)).isoformat()  # the day after day 0, at 00:05
    assert main(["models", "run-ops", *options, "--job", "activity", "--outputs", outputs_file]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith('{"job"')]
    assert json.loads(line) == {"job": "activity", "records": 1, "days": [int(DAY.timestamp() // 86400)]}


def test_compare_reads_only_the_decisions_a_challenger_shadowed(outputs_file, stack):
    from infra.models import Stack, _shadowed

    unshadowed = DecisionRecord(
        "tx-alone", "user-1", "merch-1", 10.0, "EUR", DAY.isoformat(), Decision.APPROVED, 0.1, "champ-1",
        Thresholds(0.5, 0.9), DAY.isoformat(),
    )  # fmt: skip
    DynamoDecisionStore(stack["DecisionsTableName"]).put_many([unshadowed])
    shadowed = _shadowed(Stack(stack, None, REGION))
    assert sorted(d.transaction_id for d in shadowed) == ["tx-0", "tx-1", "tx-2", "tx-3"]


def test_show_list_and_history_print_times_in_iso_8601_utc_and_thresholds_as_plain_text(
    outputs_file, tiny_challenger, capsys
):
    at = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"
    assert main(["models", "publish", str(tiny_challenger), "--who", "ana", "--outputs", outputs_file]) == 0
    assert main(["models", "challenge", "tiny-test-2", "--who", "bob", "--outputs", outputs_file]) == 0
    capsys.readouterr()
    assert main(["models", "show", "tiny-test-2", "--outputs", outputs_file]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[:2] == ["version: tiny-test-2", "published_by: ana"]
    assert re.fullmatch(f"published_at: {at}", shown[2]), shown[2]
    assert re.fullmatch("digest: [0-9a-f]{64}", shown[3]), shown[3]
    assert shown[4] == "thresholds: flag 0.4, reject 0.8"
    assert main(["models", "list", "--outputs", outputs_file]) == 0
    (_, listed) = capsys.readouterr().out.splitlines()
    assert re.match(f"tiny-test-2  challenger  published by ana at {at}  ", listed), listed
    assert main(["models", "history", "--outputs", outputs_file]) == 0
    (changed,) = capsys.readouterr().out.splitlines()
    assert re.fullmatch(
        f"#1 {at} bob: challenge -> champion the layer's bundle, challenger tiny-test-2", changed
    )


def test_a_lineup_command_that_would_change_nothing_says_so_and_records_nothing(
    outputs_file: str, tiny_challenger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def models(*args: str) -> str:
        assert main(["models", *args, "--outputs", outputs_file]) == 0
        return capsys.readouterr().out.strip()

    models("publish", str(tiny_challenger))
    assert models("challenge", "--clear") == "there is no challenger: nothing changed"
    assert models("challenge", "tiny-test-2").startswith("#1: ")
    assert models("challenge", "tiny-test-2") == "tiny-test-2 is already the challenger: nothing changed"
    assert models("promote").startswith("#2: champion tiny-test-2, challenger none")
    assert models("promote", "tiny-test-2") == "tiny-test-2 is already the champion: nothing changed"
    assert [line.split(" ")[0] for line in models("history").splitlines()] == ["#1", "#2"]
