"""The local event-source runner against moto's Kinesis and SQS: Lambda's mapping semantics, one by one."""

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import boto3
import pytest

from infra.invoke import load_handler
from infra.producer import live_transactions, produce
from infra.runner import EventSourceRunner, MappingSettings, RunnerError, RunnerStats

STREAM = "test-transactions"
BASE = MappingSettings(starting_position="TRIM_HORIZON", batch_size=10, report_batch_item_failures=True)
ON_FAILURE_KEYS = {"requestContext", "responseContext", "version", "timestamp", "KinesisBatchInfo"}
BATCH_INFO_KEYS = {
    "shardId",
    "startSequenceNumber",
    "endSequenceNumber",
    "approximateArrivalOfFirstRecord",
    "approximateArrivalOfLastRecord",
    "batchSize",
    "streamArn",
}


class FakeHandler:
    """Records every batch it sees (as sequence numbers) and answers with `respond`."""

    def __init__(self, respond: Callable[[list[str], int], Any] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.respond = respond or (lambda seqs, call: None)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        seqs = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        self.calls.append(seqs)
        self.events.append(event)
        self.contexts.append(context)
        return self.respond(seqs, len(self.calls))

    @property
    def seen(self) -> list[str]:
        return [s for call in self.calls for s in call]


@pytest.fixture
def kinesis(aws: None) -> Any:
    client = boto3.client("kinesis")
    client.create_stream(StreamName=STREAM, ShardCount=1)
    return client


@pytest.fixture
def queue_url(aws: None) -> str:
    return boto3.client("sqs").create_queue(QueueName="test-on-failure")["QueueUrl"]


def put(kinesis: Any, count: int, key: str = "user-1") -> list[str]:
    """Put `count` records under one partition key; their sequence numbers, in order."""
    return [
        kinesis.put_record(StreamName=STREAM, Data=json.dumps({"n": i}).encode(), PartitionKey=key)[
            "SequenceNumber"
        ]
        for i in range(count)
    ]


def runner(
    kinesis: Any, handler: FakeHandler, settings: MappingSettings = BASE, **kwargs: Any
) -> EventSourceRunner:
    return EventSourceRunner(
        stream_name=STREAM,
        handler=handler,
        settings=settings,
        kinesis=kinesis,
        poll_interval_s=0.01,
        retry_backoff_s=0,
        **kwargs,
    )


def drain(r: EventSourceRunner) -> RunnerStats:
    return r.run_until_idle(idle_s=0.1, timeout_s=30)


def on_failure_messages(url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_batches_respect_the_batch_size_and_keep_the_shard_order(kinesis):
    seqs = put(kinesis, 25)
    handler = FakeHandler()

    stats = drain(runner(kinesis, handler))

    assert [len(c) for c in handler.calls] == [10, 10, 5]
    assert handler.seen == seqs
    assert (stats.batches, stats.invocations, stats.records_delivered) == (3, 3, 25)


def test_the_event_and_context_are_shaped_as_lambda_makes_them(kinesis):
    put(kinesis, 2, key="user-42")
    handler = FakeHandler()

    drain(runner(kinesis, handler, function_name="fraudwatch-scoring"))

    record = handler.events[0]["Records"][0]
    arn = kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]["StreamARN"]
    assert record["eventSource"] == "aws:kinesis"
    assert record["eventName"] == "aws:kinesis:record"
    assert record["eventSourceARN"] == arn
    assert record["eventID"] == f"shardId-000000000000:{record['kinesis']['sequenceNumber']}"
    assert record["kinesis"]["partitionKey"] == "user-42"
    assert isinstance(record["kinesis"]["approximateArrivalTimestamp"], float)
    assert json.loads(__import__("base64").b64decode(record["kinesis"]["data"])) == {"n": 0}
    context = handler.contexts[0]
    assert context.function_name == "fraudwatch-scoring"
    assert context.invoked_function_arn.endswith(":function:fraudwatch-scoring")
    assert context.get_remaining_time_in_millis() > 0


def test_every_shard_is_read_each_in_its_own_order(aws):
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=STREAM, ShardCount=4)
    put_order: dict[str, list[str]] = {}
    for i in range(200):
        response = kinesis.put_record(StreamName=STREAM, Data=b"{}", PartitionKey=f"user-{i % 13}")
        put_order.setdefault(response["ShardId"], []).append(response["SequenceNumber"])
    assert len(put_order) > 1
    by_shard: dict[str, list[str]] = {}
    lock = threading.Lock()

    def handler(event, context):
        with lock:
            for r in event["Records"]:
                shard = r["eventID"].split(":")[0]
                by_shard.setdefault(shard, []).append(r["kinesis"]["sequenceNumber"])

    stats = drain(runner(kinesis, handler))  # type: ignore[arg-type]

    assert by_shard == put_order
    assert stats.records_delivered == 200


def test_a_partial_failure_resumes_from_the_lowest_failed_sequence_number_compared_as_integers(kinesis):
    seqs = put(kinesis, 12)
    assert seqs[8:10] == ["9", "10"]  # as strings "10" < "9": a string comparison would skip record 9
    handler = FakeHandler(
        lambda s, call: (
            {"batchItemFailures": [{"itemIdentifier": "10"}, {"itemIdentifier": "9"}]} if call == 1 else None
        )
    )

    stats = drain(runner(kinesis, handler, replace(BASE, batch_size=12)))

    assert handler.calls == [seqs, seqs[8:]]
    assert (stats.records_delivered, stats.retries, stats.records_sent_to_on_failure) == (12, 1, 0)


def test_failures_are_ignored_without_report_batch_item_failures(kinesis):
    put(kinesis, 3)
    handler = FakeHandler(lambda s, call: {"batchItemFailures": [{"itemIdentifier": s[0]}]})

    stats = drain(runner(kinesis, handler, replace(BASE, report_batch_item_failures=False)))

    assert len(handler.calls) == 1
    assert stats.retries == 0


@pytest.mark.parametrize("identifier", ["", None, "999"])
def test_an_empty_or_unknown_item_identifier_fails_the_whole_batch(kinesis, identifier):
    seqs = put(kinesis, 4)
    handler = FakeHandler(
        lambda s, call: (
            {"batchItemFailures": [{"itemIdentifier": s[2]}, {"itemIdentifier": identifier}]}
            if call == 1
            else None
        )
    )

    drain(runner(kinesis, handler))

    assert handler.calls == [seqs, seqs]


def test_a_handler_exception_fails_and_retries_the_whole_batch(kinesis):
    seqs = put(kinesis, 5)

    def respond(s, call):
        if call == 1:
            raise RuntimeError("boom")

    handler = FakeHandler(respond)
    stats = drain(runner(kinesis, handler))

    assert handler.calls == [seqs, seqs]
    assert (stats.errors, stats.retries, stats.records_delivered) == (1, 1, 5)


def test_bisect_isolates_a_poison_record_and_gives_up_only_on_it(kinesis, queue_url):
    seqs = put(kinesis, 8)
    poison = seqs[5]

    def respond(s, call):
        if poison in s:
            raise ValueError("poison")

    handler = FakeHandler(respond)
    settings = replace(BASE, bisect_on_error=True, maximum_retry_attempts=1, on_failure_destination="arn:q")

    stats = drain(runner(kinesis, handler, settings, on_failure_queue_url=queue_url))

    assert handler.calls[:4] == [seqs, seqs[:4], seqs[4:], seqs[4:6]]
    assert handler.calls[4:] == [[seqs[4]], [poison], [poison], seqs[6:]]
    assert (stats.bisections, stats.records_delivered, stats.records_sent_to_on_failure) == (3, 7, 1)
    [message] = on_failure_messages(queue_url)
    info = message["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (poison, poison, 1)
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"


def test_retry_exhaustion_sends_aws_on_failure_record_and_moves_past_the_batch(kinesis, queue_url):
    seqs = put(kinesis, 5)

    def respond(s, call):
        if seqs[0] in s:
            raise RuntimeError("always")

    handler = FakeHandler(respond)
    settings = replace(
        BASE, batch_size=3, maximum_retry_attempts=2, on_failure_destination="!GetAtt OnFailureQueue.Arn"
    )

    stats = drain(runner(kinesis, handler, settings, on_failure_queue_url=queue_url))

    assert handler.calls == [seqs[:3]] * 3 + [seqs[3:]]
    assert (stats.retries, stats.records_sent_to_on_failure, stats.records_delivered) == (2, 3, 2)
    [message] = on_failure_messages(queue_url)
    assert set(message) == ON_FAILURE_KEYS
    assert message["version"] == "1.0"
    assert message["timestamp"].endswith("Z")
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 3
    assert message["requestContext"]["functionArn"].endswith(":function:ScoringFunction")
    assert message["requestContext"]["requestId"] == handler.contexts[2].aws_request_id
    assert message["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    info = message["KinesisBatchInfo"]
    assert set(info) == BATCH_INFO_KEYS
    assert (info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"]) == (
        "shardId-000000000000",
        seqs[0],
        seqs[2],
    )
    assert info["batchSize"] == 3
    assert info["streamArn"].endswith(f":stream/{STREAM}")


def test_partial_failures_count_against_the_retry_limit(kinesis, queue_url):
    seqs = put(kinesis, 4)
    handler = FakeHandler(
        lambda s, call: {"batchItemFailures": [{"itemIdentifier": seqs[2]}]} if seqs[2] in s else None
    )
    settings = replace(BASE, maximum_retry_attempts=1, on_failure_destination="arn:q")

    stats = drain(runner(kinesis, handler, settings, on_failure_queue_url=queue_url))

    assert handler.calls == [seqs, seqs[2:]]  # one retry after the first invocation
    assert (stats.records_delivered, stats.records_sent_to_on_failure) == (2, 2)
    [message] = on_failure_messages(queue_url)
    assert "functionError" not in message["responseContext"]
    assert message["KinesisBatchInfo"]["startSequenceNumber"] == seqs[2]


def test_records_older_than_the_maximum_age_go_to_the_on_failure_destination_unprocessed(kinesis, queue_url):
    seqs = put(kinesis, 3)
    handler = FakeHandler()
    settings = replace(BASE, maximum_record_age_s=3600, on_failure_destination="arn:q")

    stats = drain(
        runner(kinesis, handler, settings, on_failure_queue_url=queue_url, clock=lambda: time.time() + 3601)
    )

    assert handler.calls == []
    assert stats.records_sent_to_on_failure == 3
    [message] = on_failure_messages(queue_url)
    assert message["requestContext"]["condition"] == "RecordAgeExceeded"
    assert message["requestContext"]["approximateInvokeCount"] == 0
    assert (message["KinesisBatchInfo"]["startSequenceNumber"], message["KinesisBatchInfo"]["batchSize"]) == (
        seqs[0],
        3,
    )


def test_records_within_the_maximum_age_are_delivered(kinesis):
    seqs = put(kinesis, 3)
    handler = FakeHandler()

    drain(runner(kinesis, handler, replace(BASE, maximum_record_age_s=3600)))

    assert handler.seen == seqs


def test_latest_skips_what_was_on_the_stream_before_the_runner_started(kinesis):
    put(kinesis, 3)
    handler = FakeHandler()
    r = runner(kinesis, handler, replace(BASE, starting_position="LATEST"))
    stop = threading.Event()
    thread = threading.Thread(target=r.run, args=(stop,))
    thread.start()
    try:
        assert r.ready.wait(10)
        later = put(kinesis, 2)
        deadline = time.monotonic() + 10
        while len(handler.seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert handler.seen == later


def test_at_timestamp_starts_at_the_first_record_that_arrived_at_or_after_it(kinesis):
    put(kinesis, 3)
    time.sleep(0.01)  # distinct arrival times on either side of the starting timestamp
    later = put(kinesis, 2)
    iterator = kinesis.get_shard_iterator(
        StreamName=STREAM, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )
    records = kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    start = records[3]["ApproximateArrivalTimestamp"].timestamp()
    handler = FakeHandler()
    settings = replace(BASE, starting_position="AT_TIMESTAMP", starting_position_timestamp=start)

    drain(runner(kinesis, handler, settings))

    assert handler.seen == later


def test_stop_finishes_the_batch_in_flight_and_returns(kinesis):
    seqs = put(kinesis, 30)
    stop = threading.Event()
    in_handler = threading.Event()
    release = threading.Event()

    def respond(s, call):
        in_handler.set()
        assert release.wait(10)

    handler = FakeHandler(respond)
    r = runner(kinesis, handler)
    result: list[RunnerStats] = []
    thread = threading.Thread(target=lambda: result.append(r.run(stop)))
    thread.start()
    assert in_handler.wait(10)
    stop.set()
    release.set()
    thread.join(10)

    assert not thread.is_alive()
    assert handler.calls == [seqs[:10]]
    assert result[0].records_delivered == 10


def test_a_destination_without_a_queue_url_is_refused(kinesis):
    with pytest.raises(Exception, match="on_failure_queue_url"):
        runner(kinesis, FakeHandler(), replace(BASE, on_failure_destination="!GetAtt OnFailureQueue.Arn"))


def table_items(name: str) -> dict[str, dict[str, Any]]:
    key = "transaction_id" if "Decisions" in name else "user_id"
    items = boto3.client("dynamodb").scan(TableName=name)["Items"]
    return {item[key]["S"]: item for item in items}


def test_the_real_handler_decides_every_produced_transaction_and_a_replay_changes_nothing(
    stack, tiny_bundle, restore_environ
):
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=STREAM, ShardCount=2)
    transactions = list(live_transactions(300, seed=5))
    produce(kinesis, STREAM, transactions, progress=False)
    handler = load_handler(stack, bundle_dir=tiny_bundle)

    def scoring_runner() -> EventSourceRunner:
        return EventSourceRunner(
            stream_name=STREAM,
            handler=handler,
            settings=MappingSettings.from_template(),
            kinesis=kinesis,
            on_failure_queue_url=stack["OnFailureQueueUrl"],
            poll_interval_s=0.01,
        )

    first = scoring_runner().run_until_idle(idle_s=0.2, timeout_s=60)
    decisions = table_items(stack["DecisionsTableName"])
    profiles = table_items(stack["ProfilesTableName"])
    replay = scoring_runner().run_until_idle(idle_s=0.2, timeout_s=60)

    assert (first.records_delivered, first.records_sent_to_on_failure, first.errors) == (300, 0, 0)
    assert set(decisions) == {tx["transaction_id"] for tx in transactions}
    assert replay.records_delivered == 300
    assert table_items(stack["DecisionsTableName"]) == decisions
    assert table_items(stack["ProfilesTableName"]) == profiles


class FlakyKinesis:
    """A Kinesis client whose GetRecords calls raise the given error codes, in turn, before working."""

    def __init__(self, inner: Any, errors: dict[int, str]) -> None:
        self.inner = inner
        self.errors = errors
        self.get_records_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_records(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        self.get_records_calls += 1
        code = self.errors.get(self.get_records_calls)
        if code:
            raise ClientError({"Error": {"Code": code, "Message": "injected"}}, "GetRecords")
        return self.inner.get_records(**kwargs)


def test_an_expired_iterator_is_reopened_after_the_last_record_read(kinesis):
    seqs = put(kinesis, 25)
    handler = FakeHandler()
    flaky = FlakyKinesis(kinesis, {2: "ExpiredIteratorException"})

    drain(runner(flaky, handler))

    assert handler.seen == seqs


def test_a_throttled_read_is_retried(kinesis):
    seqs = put(kinesis, 5)
    handler = FakeHandler()

    drain(runner(FlakyKinesis(kinesis, {1: "ProvisionedThroughputExceededException"}), handler))

    assert handler.seen == seqs


def test_an_unreadable_shard_stops_the_runner_with_an_error_naming_it(kinesis):
    put(kinesis, 5)

    with pytest.raises(RunnerError, match=r"shardId-000000000000: .*AccessDenied"):
        drain(runner(FlakyKinesis(kinesis, {1: "AccessDeniedException"}), FakeHandler()))
