"""Review cases on moto: the table (conditional opening and saving, the queue's index and filters, the
figures the metrics report), labels on the stream, and the real cases function fed from an SQS queue."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from fraudwatch.adapters.cases import DynamoCaseStore, KinesisLabels
from fraudwatch.adapters.dynamodb import DynamoDecisionStore
from fraudwatch.domain.cases import (
    CaseConflict,
    CaseService,
    CaseStatus,
    QueueFilter,
    Verdict,
    assigned,
    closed,
    open_case,
)
from fraudwatch.domain.decision import Decision
from fraudwatch.domain.label import label_from_mapping
from fraudwatch.errors import InvalidRecordError
from infra.invoke import load_handler
from infra.queue_runner import QueueRunner
from tests.adapters.conftest import create_table
from tests.unit.test_cases import decision


@pytest.fixture
def store(aws: None) -> DynamoCaseStore:
    return DynamoCaseStore(create_table("CasesTable"))


def test_opening_is_conditional_and_saving_needs_the_version_read(store: DynamoCaseStore):
    case = open_case(decision(), [decision("tx-0", kind=Decision.APPROVED)], "2026-09-21T12:00:00+00:00")
    assert store.open(case) is True
    assert store.get("tx-1") == case  # every field back as written

    changed = closed(case, Verdict.FRAUD, "stolen card", by="ana", at="2026-09-21T12:05:00+00:00")
    assert changed is not None
    store.save(changed[0], read_version=0)
    assert store.open(case) is False  # a redelivered alert: the closed case stays closed
    assert store.get("tx-1") == changed[0]
    with pytest.raises(CaseConflict):
        store.save(changed[0], read_version=0)


def test_the_queue_is_oldest_first_filtered_and_paged(store: DynamoCaseStore):
    for i, merchant in enumerate(["m-a", "m-b", "m-a", "m-a"]):
        rules = ("rule:night",) if i % 2 else ()
        store.open(
            open_case(
                decision(f"tx-{i}", merchant_id=merchant, rule_reasons=rules),
                [],
                f"2026-09-21T1{5 - i}:00:00+00:00",
            )
        )
    everything = store.queue(QueueFilter(), 10, None)
    assert [c.case_id for c in everything.cases] == ["tx-3", "tx-2", "tx-1", "tx-0"]
    assert everything.next is None

    first = store.queue(QueueFilter(merchant="m-a"), 2, None)
    assert [c.case_id for c in first.cases] == ["tx-3", "tx-2"]
    assert first.next is not None
    second = store.queue(QueueFilter(merchant="m-a"), 2, first.next)
    assert [c.case_id for c in second.cases] == ["tx-0"]
    assert [c.case_id for c in store.queue(QueueFilter(rule="rule:night"), 10, None).cases] == [
        "tx-3",
        "tx-1",
    ]
    assert len(store.queue(QueueFilter(reason="amount_zscore"), 10, None).cases) == 4
    with pytest.raises(InvalidRecordError) as bad:
        store.queue(QueueFilter(), 2, "not-a-cursor")
    assert bad.value.field == "cursor"
    with pytest.raises(InvalidRecordError):  # a cursor of another index
        store.queue(QueueFilter(user="user-1"), 2, first.next)


def test_an_analysts_and_a_users_cases_come_through_their_indexes(store: DynamoCaseStore):
    for i in range(3):
        store.open(open_case(decision(f"tx-{i}", user=f"user-{i % 2}"), [], f"2026-09-21T1{i}:00:00+00:00"))
    for i in (0, 2):
        case = store.get(f"tx-{i}")
        assert case is not None
        changed = assigned(case, "ana", by="lead", at=f"2026-09-21T13:0{i}:00+00:00")
        assert changed is not None
        store.save(changed[0], 0)

    mine = store.queue(QueueFilter(assignee="ana"), 1, None)
    assert [c.case_id for c in mine.cases] == ["tx-0"]
    assert mine.next is not None
    assert [c.case_id for c in store.queue(QueueFilter(assignee="ana"), 5, mine.next).cases] == ["tx-2"]
    assert [c.case_id for c in store.queue(QueueFilter(user="user-0"), 5, None).cases] == ["tx-0", "tx-2"]
    assert store.queue(QueueFilter(user="user-0", status=CaseStatus.CLOSED), 5, None).cases == []
    assert store.queue(QueueFilter(assignee="bob"), 5, None).cases == []


def test_the_figures_count_open_cases_the_oldest_and_the_minutes_verdicts(store: DynamoCaseStore):
    store.open(open_case(decision("tx-old"), [], "2026-09-21T08:00:00+00:00"))
    store.open(open_case(decision("tx-new"), [], "2026-09-21T11:00:00+00:00"))
    done = open_case(decision("tx-done"), [], "2026-09-21T07:00:00+00:00")
    changed = closed(done, Verdict.GENUINE, "fine", by="ana", at="2026-09-21T11:59:30+00:00")
    assert changed is not None
    store.open(done)
    store.save(changed[0], 0)

    assert store.count_open() == (2, "2026-09-21T08:00:00+00:00")
    minute = store.verdicts_between("2026-09-21T11:59:00+00:00", "2026-09-21T12:00:00+00:00")
    assert minute == {Verdict.FRAUD: 0, Verdict.GENUINE: 1}
    assert sum(store.verdicts_between("2026-09-21T12:00:00+00:00", "2026-09-21T12:01:00+00:00").values()) == 0


def test_a_verdict_label_goes_on_the_stream_under_its_merchant(store: DynamoCaseStore):
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="labels", ShardCount=1)
    store.open(open_case(decision(), [], "2026-09-21T12:00:00+00:00"))
    service = CaseService(store, KinesisLabels("labels", kinesis))

    service.close("tx-1", Verdict.FRAUD, "stolen", by="ana")

    shard = kinesis.list_shards(StreamName="labels")["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName="labels", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )
    [record] = kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    assert record["PartitionKey"] == "merch-1"
    label = label_from_mapping(json.loads(record["Data"]), received_at=datetime.now(UTC).timestamp())
    assert (label.transaction_id, label.is_fraud) == ("tx-1", True)


def alert_queue(sqs: Any) -> str:
    return str(
        sqs.create_queue(
            QueueName="cases.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        )["QueueUrl"]
    )


def test_the_cases_function_opens_each_alert_once_through_its_queue(stack, restore_environ):
    outputs = stack
    DynamoDecisionStore(stack["DecisionsTableName"]).put_many(
        [decision("tx-before", kind=Decision.APPROVED, decided_at="2026-09-20T00:00:00+00:00")]
    )
    handler = load_handler(outputs, function="CasesFunction")
    sqs = boto3.client("sqs")
    url = alert_queue(sqs)
    alert = decision().to_dict()
    for attempt in range(2):  # the same alert delivered twice
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps(alert),
            MessageGroupId="user-1",
            MessageDeduplicationId=f"d{attempt}",
        )
    runner = QueueRunner(sqs, url, handler, "CasesFunction")

    assert runner.poll_once() + runner.poll_once() == 2
    store = DynamoCaseStore(outputs["CasesTableName"])
    [case] = store.queue(QueueFilter(), 10, None).cases
    assert case.case_id == "tx-1"
    assert case.status is CaseStatus.OPEN
    assert [r.transaction_id for r in case.recent] == ["tx-before"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)


def test_the_cases_function_leaves_an_alert_that_is_no_decision_on_its_queue(stack, restore_environ):
    outputs = stack
    handler = load_handler(outputs, function="CasesFunction")
    sqs = boto3.client("sqs")
    url = alert_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"transaction_id": "tx-x"}), MessageGroupId="g")

    assert QueueRunner(sqs, url, handler, "CasesFunction").poll_once() == 0  # failed: kept for the DLQ


def test_the_schedule_reports_the_queue_as_metrics(stack, restore_environ, capsys):
    outputs = stack
    DynamoCaseStore(outputs["CasesTableName"]).open(open_case(decision(), [], "2026-09-21T11:00:00+00:00"))
    handler = load_handler(outputs, function="CasesFunction")
    from infra.invoke import LocalContext

    figures = handler({"source": "aws.events", "time": "2026-09-21T12:00:00Z"}, LocalContext())

    assert figures == {
        "OpenCases": 1.0,
        "OldestOpenCaseAge": 3600.0,
        "FraudVerdicts": 0.0,
        "GenuineVerdicts": 0.0,
    }
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    # what OldestOpenCaseAlarm watches: the metric under the template's namespace and `service` dimension
    assert emitted[-1]["OldestOpenCaseAge"] == [3600.0]
    assert emitted[-1]["service"] == "fraudwatch"
    assert emitted[-1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Fraudwatch"
