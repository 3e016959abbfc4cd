"""AWS's failures injected into the adapters on moto, and FIFO targets delivering each alert and record once.

Failures come through botocore's event hooks on the adapters' own clients, as AWS would return them
after the SDK's own retries: an error response (code and HTTP status), an exception before the request
(the write never happened) or after it (the write happened, the response was lost), or a
PublishBatch / SendMessageBatch answer with `Failed` entries. A permanent failure stops at once, a
transient one is retried with backoff; either way what is left undone is raised with the operation,
the resource and AWS's code, and never AWS's message (which can echo the request's values).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from fraudwatch.adapters.aws import ATTEMPTS, Failure
from fraudwatch.adapters.dynamodb import DynamoDecisionStore, DynamoProfileStore
from fraudwatch.adapters.sns import SnsAlertPublisher
from fraudwatch.adapters.sqs import SqsQuarantine
from fraudwatch.domain.decision import Decision, DecisionRecord, Thresholds
from fraudwatch.domain.records import QuarantinedRecord, StreamRecord
from fraudwatch.errors import AlertPublishError, DecisionStoreError, ProfileStoreError, QuarantineError

ECHO = "Item {card_number: 4111111111111111, amount: 1234.56} was refused"
"""An AWS message echoing the request, as some do: it must reach no exception's text and no log."""

Answer = Callable[[dict[str, Any]], tuple[AWSResponse, dict[str, Any]]]


def error(code: str, status: int = 400) -> Answer:
    """An error response, as AWS sends it once botocore has retried."""

    def answer(params: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        parsed = {"Error": {"Code": code, "Message": ECHO}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return AWSResponse("https://aws", status, HTTPHeaders(), None), parsed

    return answer


def entries_failing(failures: dict[str, tuple[str, bool]]) -> Answer:
    """A PublishBatch or SendMessageBatch answer failing these entry ids with (code, sender's fault)."""

    def answer(params: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        entries = params.get("PublishBatchRequestEntries") or params["Entries"]
        failed = [
            {
                "Id": e["Id"],
                "Code": failures[e["Id"]][0],
                "SenderFault": failures[e["Id"]][1],
                "Message": ECHO,
            }
            for e in entries
            if e["Id"] in failures
        ]
        successful = [
            {"Id": e["Id"], "MessageId": f"m-{e['Id']}"} for e in entries if e["Id"] not in failures
        ]
        parsed = {"Successful": successful, "Failed": failed, "ResponseMetadata": {"HTTPStatusCode": 200}}
        return AWSResponse("https://aws", 200, HTTPHeaders(), None), parsed

    return answer


class LostResponse:
    """The call reaches moto and does its work; then its response is lost."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


class Calls:
    """Answers a client's calls of one operation in turn (None: the call reaches moto); records their
    parameters."""

    def __init__(
        self, client: Any, operation: str, answers: Iterable[Answer | Exception | LostResponse | None] = ()
    ) -> None:
        self.params: list[dict[str, Any]] = []
        self._answers = list(answers)
        self._lost: Exception | None = None
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"provide-client-params.{service}.{operation}", self._record)
        client.meta.events.register(f"before-call.{service}.{operation}", self._before)
        client.meta.events.register(f"after-call.{service}.{operation}", self._after)

    @property
    def count(self) -> int:
        return len(self.params)

    def entry_ids(self, call: int) -> list[str]:
        params = self.params[call]
        return [e["Id"] for e in params.get("PublishBatchRequestEntries") or params["Entries"]]

    def _record(self, params: dict[str, Any], **kwargs: Any) -> None:
        self.params.append(copy.deepcopy(params))

    def _before(self, **kwargs: Any) -> Any:
        answer = self._answers.pop(0) if self._answers else None
        if isinstance(answer, LostResponse):
            self._lost = answer.exc
            return None
        if isinstance(answer, Exception):
            raise answer
        return None if answer is None else answer(self.params[-1])

    def _after(self, **kwargs: Any) -> None:
        lost, self._lost = self._lost, None
        if lost is not None:
            raise lost


def decision(tx: str, user: str = "user-1") -> DecisionRecord:
    return DecisionRecord(
        transaction_id=tx,
        user_id=user,
        merchant_id="merch-1",
        amount=1234.56,
        currency="USD",
        transaction_time="2026-11-30T03:00:00+00:00",
        decision=Decision.FLAGGED,
        score=0.73,
        model_version="m-1",
        thresholds=Thresholds(0.5, 0.9),
        decided_at="2026-11-30T03:00:01+00:00",
    )


def quarantined(shard: str, sequence: str) -> QuarantinedRecord:
    return QuarantinedRecord(
        StreamRecord(shard, sequence, b"\xff not json", 1_796_000_000.0), "payload", "bad"
    )


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def stored_ids(table: str) -> set[str]:
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return {item["transaction_id"]["S"] for item in items}


def assert_raised(
    raised: pytest.ExceptionInfo[Any], code: str, *, retryable: bool, unwritten: set[str]
) -> None:
    error = raised.value
    assert (error.code, error.retryable, error.unwritten) == (code, retryable, unwritten)
    assert ECHO not in str(error)
    assert "4111" not in str(error)


# --------------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("ProvisionedThroughputExceededException", 400, True),
        ("ThrottlingException", 400, True),
        ("RequestLimitExceeded", 400, True),
        ("Throttling", 400, True),
        ("KMSThrottling", 400, True),
        ("KMS.ThrottlingException", 400, True),
        ("RequestThrottled", 400, True),
        ("InternalServerError", 500, True),
        ("InternalError", 500, True),
        ("ServiceUnavailable", 503, True),
        ("AnUnknownCode", 502, True),
        ("AnUnknownCode", 429, True),
        ("AccessDeniedException", 400, False),
        ("AuthorizationError", 403, False),
        ("ResourceNotFoundException", 400, False),
        ("NotFound", 404, False),
        ("AWS.SimpleQueueService.NonExistentQueue", 400, False),
        ("ValidationException", 400, False),
        ("InvalidParameter", 400, False),
        ("KMSAccessDenied", 400, False),
        ("KMSDisabled", 400, False),
        ("KMS.DisabledException", 400, False),
        ("UnrecognizedClientException", 400, False),
        ("AnUnknownCode", 400, False),
    ],
)
def test_a_client_error_is_told_by_its_code_and_status(code, status, retryable):
    response: Any = {
        "Error": {"Code": code, "Message": "slow down, throttled, retry"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    exc = ClientError(response, "AnyOperation")
    failure = Failure.of_exception(exc)
    assert (failure.code, failure.status, failure.retryable) == (code, status, retryable)


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (ReadTimeoutError(endpoint_url="https://aws"), True),
        (ConnectTimeoutError(endpoint_url="https://aws"), True),
        (EndpointConnectionError(endpoint_url="https://aws"), True),
        (ConnectionClosedError(endpoint_url="https://aws"), True),
        (NoCredentialsError(), False),
        (ParamValidationError(report="Id too long"), False),
    ],
)
def test_a_transport_failure_is_told_by_its_type(exc, retryable):
    failure = Failure.of_exception(exc)
    assert (failure.code, failure.retryable) == (type(exc).__name__, retryable)


@pytest.mark.parametrize(
    ("entry", "retryable"),
    [
        ({"Id": "0", "Code": "InternalError", "SenderFault": False}, True),
        ({"Id": "0", "Code": "KMSThrottling", "SenderFault": True}, True),
        ({"Id": "0", "Code": "InvalidParameter", "SenderFault": True}, False),
        ({"Id": "0", "Code": "KMS.AccessDeniedException", "SenderFault": True}, False),
    ],
)
def test_a_failed_batch_entry_is_told_by_its_code_and_whose_fault_it_is(entry, retryable):
    assert Failure.of_entry(entry) == Failure(entry["Code"], retryable)


# ----------------------------------------------------------------------------------------- DynamoDB


@pytest.mark.parametrize(
    "code",
    ["AccessDeniedException", "ResourceNotFoundException", "ValidationException", "KMSAccessDeniedException"],
)
def test_a_permanent_write_failure_stops_at_once_and_is_raised_with_its_code(stack, code):
    client = boto3.client("dynamodb")
    calls = Calls(client, "BatchWriteItem", [error(code)])
    sleeps: list[float] = []
    store = DynamoDecisionStore(stack["DecisionsTableName"], client, sleep=sleeps.append)

    with pytest.raises(DecisionStoreError) as raised:
        store.put_many([decision(f"tx-{i}") for i in range(3)])

    assert (calls.count, sleeps) == (1, [])
    assert_raised(raised, code, retryable=False, unwritten={"tx-0", "tx-1", "tx-2"})
    assert (raised.value.operation, raised.value.resource) == ("BatchWriteItem", stack["DecisionsTableName"])
    assert raised.value.status == 400


@pytest.mark.parametrize(
    "answer",
    [
        error("ProvisionedThroughputExceededException"),
        error("ThrottlingException"),
        error("InternalServerError", 500),
        error("AnUnknownCode", 503),
        ReadTimeoutError(endpoint_url="https://dynamodb"),
        ConnectTimeoutError(endpoint_url="https://dynamodb"),
        LostResponse(ReadTimeoutError(endpoint_url="https://dynamodb")),
    ],
    ids=["throttled", "throttling", "500", "503", "read-timeout", "connect-timeout", "response-lost"],
)
def test_a_transient_write_failure_is_retried_with_backoff(stack, answer):
    client = boto3.client("dynamodb")
    calls = Calls(client, "BatchWriteItem", [answer])
    sleeps: list[float] = []
    store = DynamoDecisionStore(stack["DecisionsTableName"], client, sleep=sleeps.append)

    assert store.put_many([decision(f"tx-{i}") for i in range(3)]) == set()

    assert calls.count == 2
    assert len(sleeps) == 1
    assert stored_ids(stack["DecisionsTableName"]) == {"tx-0", "tx-1", "tx-2"}


def test_a_transient_write_failure_that_lasts_is_raised_after_the_last_attempt(stack):
    client = boto3.client("dynamodb")
    calls = Calls(client, "BatchWriteItem", [error("ThrottlingException")] * ATTEMPTS)
    sleeps: list[float] = []
    store = DynamoDecisionStore(stack["DecisionsTableName"], client, sleep=sleeps.append)

    with pytest.raises(DecisionStoreError) as raised:
        store.put_many([decision("tx-1")])

    assert (calls.count, len(sleeps)) == (ATTEMPTS, ATTEMPTS - 1)
    assert_raised(raised, "ThrottlingException", retryable=True, unwritten={"tx-1"})


def test_a_refused_chunk_costs_only_its_own_items_and_a_permanent_failure_is_the_one_reported(stack):
    client = boto3.client("dynamodb")
    # The first chunk of 25 throttled at every attempt, the second refused: 30 decisions, none written.
    calls = Calls(
        client, "BatchWriteItem", [*[error("ThrottlingException")] * ATTEMPTS, error("ValidationException")]
    )
    store = DynamoDecisionStore(stack["DecisionsTableName"], client, sleep=lambda _: None)
    decisions = [decision(f"tx-{i:02d}") for i in range(60)]

    with pytest.raises(DecisionStoreError) as raised:
        store.put_many(decisions)

    assert calls.count == ATTEMPTS + 2
    assert_raised(
        raised, "ValidationException", retryable=False, unwritten={f"tx-{i:02d}" for i in range(50)}
    )
    assert stored_ids(stack["DecisionsTableName"]) == {f"tx-{i:02d}" for i in range(50, 60)}


@pytest.mark.parametrize(
    ("answer", "code", "retryable"),
    [
        (error("AccessDeniedException"), "AccessDeniedException", False),
        (error("ProvisionedThroughputExceededException"), "ProvisionedThroughputExceededException", True),
        (ReadTimeoutError(endpoint_url="https://dynamodb"), "ReadTimeoutError", True),
    ],
    ids=["access-denied", "throttled", "read-timeout"],
)
def test_a_failed_read_is_raised_at_once_with_its_code(stack, answer, code, retryable):
    """The batch waits on its read: its redelivery retries it, after botocore's own retries."""
    client = boto3.client("dynamodb")
    calls = Calls(client, "BatchGetItem", [answer])
    profiles = DynamoProfileStore(
        stack["ProfilesTableName"], stack["MerchantProfilesTableName"], client, sleep=lambda _: None
    )

    with pytest.raises(ProfileStoreError) as raised:
        profiles.get_many(["user-1"], ["merch-1"])

    assert calls.count == 1
    assert_raised(raised, code, retryable=retryable, unwritten={"user-1", "merch-1"})
    tables = sorted([stack["MerchantProfilesTableName"], stack["ProfilesTableName"]])
    assert (raised.value.operation, raised.value.resource) == ("BatchGetItem", ", ".join(tables))


# ---------------------------------------------------------------------------------------------- SNS


def fifo_topic_and_inbox(name: str = "alerts") -> tuple[str, str]:
    """A FIFO topic, and a FIFO queue subscribed to it with raw delivery."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name=f"{name}.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    inbox = sqs.create_queue(QueueName=f"{name}-inbox.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    subscribe(topic, inbox)
    return topic, inbox


def standard_topic_and_inbox(name: str = "alerts") -> tuple[str, str]:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name=name)["TopicArn"]
    inbox = sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
    subscribe(topic, inbox)
    return topic, inbox


def subscribe(topic: str, queue_url: str) -> None:
    sqs = boto3.client("sqs")
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns").subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )


def receive_all(queue_url: str) -> list[dict[str, Any]]:
    """Every message on a queue, with its message and system attributes, deleted once received."""
    sqs = boto3.client("sqs")
    messages: list[Any] = []
    while batch := sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    ).get("Messages", []):
        messages.extend(batch)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return messages


def alert_ids(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(m["MessageAttributes"]["alert_id"]["StringValue"] for m in messages)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AuthorizationError", 403),
        ("NotFound", 404),
        ("KMSAccessDenied", 400),
        ("KMSDisabled", 400),
        ("KMSInvalidState", 400),
        ("InvalidParameter", 400),
    ],
)
def test_a_permanent_publish_failure_stops_at_once(aws, code, status):
    topic, inbox = fifo_topic_and_inbox()
    client = boto3.client("sns")
    calls = Calls(client, "PublishBatch", [error(code, status)])
    sleeps: list[float] = []
    publisher = SnsAlertPublisher(topic, client, sleep=sleeps.append)

    with pytest.raises(AlertPublishError) as raised:
        publisher.publish_many([decision("tx-1"), decision("tx-2", "user-2")])

    assert (calls.count, sleeps) == (1, [])
    assert_raised(raised, code, retryable=False, unwritten={"tx-1", "tx-2"})
    assert (raised.value.operation, raised.value.resource, raised.value.status) == (
        "PublishBatch",
        "alerts.fifo",
        status,
    )
    assert receive_all(inbox) == []


@pytest.mark.parametrize(
    "answer",
    [
        error("Throttling"),
        error("Throttled"),
        error("KMSThrottling"),
        error("InternalError", 500),
        ConnectTimeoutError(endpoint_url="https://sns"),
        LostResponse(ReadTimeoutError(endpoint_url="https://sns")),
    ],
    ids=["throttling", "throttled", "kms-throttling", "500", "connect-timeout", "response-lost"],
)
def test_a_transient_publish_failure_is_retried_and_each_alert_received_once(aws, answer):
    topic, inbox = fifo_topic_and_inbox()
    client = boto3.client("sns")
    calls = Calls(client, "PublishBatch", [answer])
    sleeps: list[float] = []
    publisher = SnsAlertPublisher(topic, client, sleep=sleeps.append)

    assert publisher.publish_many([decision("tx-1"), decision("tx-2", "user-2")]) == set()

    assert (calls.count, len(sleeps)) == (2, 1)
    # After a lost response the alerts are published twice: the FIFO topic delivers them once.
    assert alert_ids(receive_all(inbox)) == ["tx-1", "tx-2"]


def test_entries_failed_by_the_sender_are_not_published_again_those_failed_by_sns_are(aws):
    topic, inbox = fifo_topic_and_inbox()
    client = boto3.client("sns")
    failing = {"0": ("InvalidParameter", True), "1": ("InternalError", False), "2": ("KMSThrottling", True)}
    calls = Calls(client, "PublishBatch", [entries_failing(failing)])
    publisher = SnsAlertPublisher(topic, client, sleep=lambda _: None)

    with pytest.raises(AlertPublishError) as raised:
        publisher.publish_many([decision(f"tx-{i}", f"user-{i}") for i in range(4)])

    assert_raised(raised, "InvalidParameter", retryable=False, unwritten={"tx-0"})
    assert calls.entry_ids(1) == ["1", "2"]
    # Only the second call reached the topic (the first one's answer was made up here).
    assert alert_ids(receive_all(inbox)) == ["tx-1", "tx-2"]


def test_entries_failed_by_sns_at_every_attempt_are_raised_retryable(aws):
    topic, _ = fifo_topic_and_inbox()
    client = boto3.client("sns")
    calls = Calls(client, "PublishBatch", [entries_failing({"1": ("InternalError", False)})] * ATTEMPTS)
    publisher = SnsAlertPublisher(topic, client, sleep=lambda _: None)

    with pytest.raises(AlertPublishError) as raised:
        publisher.publish_many([decision("tx-0"), decision("tx-1")])

    assert calls.count == ATTEMPTS
    assert_raised(raised, "InternalError", retryable=True, unwritten={"tx-1"})


def test_a_fifo_topic_groups_alerts_by_user_and_delivers_a_republished_alert_once(aws):
    topic, inbox = fifo_topic_and_inbox()
    client = boto3.client("sns")
    calls = Calls(client, "PublishBatch")
    publisher = SnsAlertPublisher(topic, client)
    alerts = [decision("tx-1", "user-1"), decision("tx-2", "user-2"), decision("tx-3", "user-1")]

    assert publisher.publish_many(alerts) == set()
    assert publisher.publish_many(alerts) == set()  # the batch redelivered

    messages = receive_all(inbox)
    assert alert_ids(messages) == ["tx-1", "tx-2", "tx-3"]
    for message in messages:
        body = json.loads(message["Body"])
        assert message["Attributes"]["MessageDeduplicationId"] == digest(body["transaction_id"])
        assert message["Attributes"]["MessageGroupId"] == digest(body["user_id"])
    entries = calls.params[0]["PublishBatchRequestEntries"]
    assert [e["MessageGroupId"] for e in entries] == [digest("user-1"), digest("user-2"), digest("user-1")]


def test_ids_of_any_printable_unicode_make_valid_fifo_ids(aws):
    topic, inbox = fifo_topic_and_inbox()
    client = boto3.client("sns")
    calls = Calls(client, "PublishBatch")
    tx = ("tx é€ 😀 " * 20)[:128]
    user = ("Jöhn Dœ <ü@x> " * 10)[:128]

    assert SnsAlertPublisher(topic, client).publish_many([decision(tx, user)]) == set()

    (entry,) = calls.params[0]["PublishBatchRequestEntries"]
    for fifo_id in (entry["MessageDeduplicationId"], entry["MessageGroupId"]):
        assert re.fullmatch("[0-9a-f]{64}", fifo_id)
    (message,) = receive_all(inbox)
    assert message["MessageAttributes"]["alert_id"]["StringValue"] == tx


def test_a_standard_topic_gets_neither_fifo_id(aws):
    topic, inbox = standard_topic_and_inbox()
    client = boto3.client("sns")
    calls = Calls(client, "PublishBatch")
    publisher = SnsAlertPublisher(topic, client)

    assert publisher.publish_many([decision("tx-1"), decision("tx-2")]) == set()
    assert publisher.publish_many([decision("tx-1")]) == set()

    for entry in calls.params[0]["PublishBatchRequestEntries"]:
        assert "MessageDeduplicationId" not in entry
        assert "MessageGroupId" not in entry
    assert alert_ids(receive_all(inbox)) == ["tx-1", "tx-1", "tx-2"]  # no deduplication on a standard topic


# ---------------------------------------------------------------------------------------------- SQS


def fifo_queue(name: str = "quarantine") -> str:
    return boto3.client("sqs").create_queue(QueueName=f"{name}.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]


@pytest.mark.parametrize(
    "code",
    ["AWS.SimpleQueueService.NonExistentQueue", "KMS.AccessDeniedException", "KmsDisabled", "AccessDenied"],
)
def test_a_permanent_send_failure_stops_at_once(aws, code):
    queue = fifo_queue()
    client = boto3.client("sqs")
    calls = Calls(client, "SendMessageBatch", [error(code)])
    sleeps: list[float] = []

    with pytest.raises(QuarantineError) as raised:
        SqsQuarantine(queue, client, sleep=sleeps.append).put_many(
            [quarantined("shardId-000000000001", "42")]
        )

    assert (calls.count, sleeps) == (1, [])
    assert_raised(raised, code, retryable=False, unwritten={"42"})
    assert (raised.value.operation, raised.value.resource) == ("SendMessageBatch", "quarantine.fifo")


def test_a_transient_send_failure_is_retried_and_the_record_kept_once(aws):
    queue = fifo_queue()
    client = boto3.client("sqs")
    calls = Calls(
        client,
        "SendMessageBatch",
        [LostResponse(ReadTimeoutError(endpoint_url="https://sqs")), error("InternalError", 500)],
    )
    quarantine = SqsQuarantine(queue, client, sleep=lambda _: None)

    assert quarantine.put_many([quarantined("shardId-000000000001", "42")]) == set()

    assert calls.count == 3
    assert len(receive_all(queue)) == 1


def test_entries_failed_by_the_sender_are_not_sent_again_those_failed_by_sqs_are(aws):
    queue = fifo_queue()
    client = boto3.client("sqs")
    failing = {"0": ("InternalError", False), "1": ("InvalidParameterValue", True)}
    calls = Calls(client, "SendMessageBatch", [entries_failing(failing)])
    items = [quarantined("shardId-000000000001", str(seq)) for seq in (41, 42, 43)]

    with pytest.raises(QuarantineError) as raised:
        SqsQuarantine(queue, client, sleep=lambda _: None).put_many(items)

    assert_raised(raised, "InvalidParameterValue", retryable=False, unwritten={"42"})
    assert calls.entry_ids(1) == ["0"]


def test_a_fifo_quarantine_keeps_a_record_sent_twice_once_grouped_by_shard(aws):
    queue = fifo_queue()
    client = boto3.client("sqs")
    calls = Calls(client, "SendMessageBatch")
    quarantine = SqsQuarantine(queue, client)
    # The same sequence number on two shards: two records.
    items = [quarantined("shardId-000000000001", "42"), quarantined("shardId-000000000002", "42")]

    assert quarantine.put_many(items) == set()
    assert quarantine.put_many(items) == set()  # the batch redelivered

    messages = receive_all(queue)
    assert sorted(m["MessageAttributes"]["record_id"]["StringValue"] for m in messages) == [
        "shardId-000000000001:42",
        "shardId-000000000002:42",
    ]
    for message in messages:
        record_id = message["MessageAttributes"]["record_id"]["StringValue"]
        assert message["Attributes"]["MessageGroupId"] == record_id.split(":")[0]
        assert message["Attributes"]["MessageDeduplicationId"] == digest(record_id)
    assert (
        calls.params[0]["Entries"][0]["MessageDeduplicationId"]
        == calls.params[1]["Entries"][0]["MessageDeduplicationId"]
    )


def test_a_standard_quarantine_gets_neither_fifo_id_and_keeps_the_record_id(aws):
    queue = boto3.client("sqs").create_queue(QueueName="quarantine")["QueueUrl"]
    client = boto3.client("sqs")
    calls = Calls(client, "SendMessageBatch")
    quarantine = SqsQuarantine(queue, client)

    assert quarantine.put_many([quarantined("shardId-000000000001", "42")]) == set()
    assert quarantine.put_many([quarantined("shardId-000000000001", "42")]) == set()

    (entry,) = calls.params[0]["Entries"]
    assert "MessageDeduplicationId" not in entry
    assert "MessageGroupId" not in entry
    messages = receive_all(queue)
    assert [m["MessageAttributes"]["record_id"]["StringValue"] for m in messages] == [
        "shardId-000000000001:42"
    ] * 2  # a consumer of a standard queue dedupes by this attribute
