"""`fraudwatch alerts`: the decisions' alerts followed on moto, printed once and logged once."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest

from fraudwatch.adapters.sns import SnsAlertPublisher
from fraudwatch.domain.decision import Decision, DecisionRecord, Reason, Thresholds
from infra.alerts import LOGGED_FIELDS, Watch, open_watch, watch
from infra.cli import main

DECISION = DecisionRecord(
    transaction_id="tx-late",
    user_id="user-1",
    merchant_id="merch-1",
    amount=1234.56,
    currency="USD",
    transaction_time="2026-11-30T03:00:00+00:00",
    decision=Decision.REJECTED,
    score=0.97,
    model_version="m-1",
    thresholds=Thresholds(0.5, 0.9),
    decided_at="2026-11-30T03:00:01+00:00",
    reasons=(Reason("amount_zscore", 6.2, 2.5),),
)


def decisions(count: int) -> list[DecisionRecord]:
    return [DECISION._replace(transaction_id=f"tx-{i}", user_id=f"user-{i % 2}") for i in range(count)]


@pytest.fixture
def watcher(stack: dict[str, str]) -> Watch:
    sqs = boto3.client("sqs")
    return Watch(sqs, open_watch(boto3.client("sns"), sqs, stack["AlertsTopicArn"]))


def logged(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_alerts_published_while_no_one_watched_are_shown_at_the_next_look_then_never_again(
    stack: dict[str, str], watcher: Watch, tmp_path: Path
) -> None:
    SnsAlertPublisher(stack["AlertsTopicArn"]).publish_many(decisions(3))
    log = tmp_path / "alerts.log"
    lines: list[str] = []
    assert len(watch(watcher, log, follow=False, stop=threading.Event(), say=lines.append)) == 3
    assert sorted(line.split("tx ")[1].split()[0] for line in lines) == ["tx-0", "tx-1", "tx-2"]
    assert "REJECTED" in lines[0]
    assert "amount_zscore +2.50" in lines[0]
    assert sorted(entry["transaction_id"] for entry in logged(log)) == ["tx-0", "tx-1", "tx-2"]

    again = Watch(watcher.sqs, watcher.queue_url)  # a later run: the queue was emptied as it logged
    assert watch(again, log, follow=False, stop=threading.Event(), say=lines.append) == []
    assert len(logged(log)) == 3


def test_a_republished_alert_is_shown_and_logged_once(
    stack: dict[str, str], watcher: Watch, tmp_path: Path
) -> None:
    publisher = SnsAlertPublisher(stack["AlertsTopicArn"])
    publisher.publish_many(decisions(2))
    publisher.publish_many(decisions(2))  # a redelivered batch: FIFO deduplication drops it
    body = json.dumps(DECISION.to_dict())  # the same alert after the five-minute window
    for attempt in range(2):
        watcher.sqs.send_message(
            QueueUrl=watcher.queue_url,
            MessageBody=body,
            MessageGroupId="g",
            MessageDeduplicationId=f"late-{attempt}",
        )
    log = tmp_path / "alerts.log"
    assert len(watch(watcher, log, follow=False, stop=threading.Event(), say=lambda _: None)) == 3
    assert sorted(entry["transaction_id"] for entry in logged(log)) == ["tx-0", "tx-1", "tx-late"]


def test_the_log_keeps_the_decision_contracts_fields_and_nothing_a_producer_added(
    watcher: Watch, tmp_path: Path
) -> None:
    alert = {**DECISION.to_dict(), "card_number": "4111111111111111", "note": "from a producer"}
    watcher.sqs.send_message(
        QueueUrl=watcher.queue_url,
        MessageBody=json.dumps(alert),
        MessageGroupId="g",
        MessageDeduplicationId="x",
    )
    log = tmp_path / "alerts.log"
    watch(watcher, log, follow=False, stop=threading.Event(), say=lambda _: None)
    (entry,) = logged(log)
    assert set(entry) == set(LOGGED_FIELDS)
    assert entry == {name: DECISION.to_dict()[name] for name in LOGGED_FIELDS}


def test_following_goes_on_until_stopped(stack: dict[str, str], watcher: Watch, tmp_path: Path) -> None:
    stop = threading.Event()
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if len(lines) == 2:
            stop.set()

    publisher = threading.Timer(0.2, SnsAlertPublisher(stack["AlertsTopicArn"]).publish_many, [decisions(2)])
    publisher.start()
    count = len(watch(watcher, tmp_path / "alerts.log", follow=True, stop=stop, say=say, wait_s=1))
    publisher.join()
    assert count == 2  # it waited for alerts published after it started, then stopped


def test_the_command_watches_the_stacks_topic(
    stack: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "stack.json"
    outputs.write_text(json.dumps({"outputs": stack}))
    log = tmp_path / "alerts.log"
    assert main(["alerts", "--outputs", str(outputs), "--log", str(log)]) == 0  # subscribes its queue
    SnsAlertPublisher(stack["AlertsTopicArn"]).publish_many(decisions(4))
    assert main(["alerts", "--outputs", str(outputs), "--log", str(log)]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().endswith("4 alerts")
    assert len(captured.out.strip().splitlines()) == 4
    assert len(logged(log)) == 4


def test_a_log_it_cannot_append_to_is_a_usage_error_before_any_alert_is_taken(
    stack: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "stack.json"
    outputs.write_text(json.dumps({"outputs": stack}))
    assert main(["alerts", "--outputs", str(outputs), "--log", str(tmp_path)]) == 2  # a directory
    assert capsys.readouterr().err.strip() == (
        f"fraudwatch alerts: error: cannot append to {tmp_path} (Is a directory), check --log"
    )
