"""No card data or personal data reaches the logs: everything the real handler logs, searched.

Producers make mistakes: a card number or a cardholder's name and email in an extra field, or in the
wrong field. The handler ignores extras and quarantines malformed records, and whatever it logs on
the way (Powertools' JSON lines, the EMF metric lines, any library's log records, the retry path)
must carry ids, counts, fields and reasons only. Amounts stay out of the logs too.
"""

import inspect
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from fraudwatch.observability import logger as service_logger
from infra.events import event_from_payloads
from infra.invoke import HANDLER_FILE, LocalContext, load_handler
from infra.template import load_template
from tests.adapters.conftest import drain

PAN = "4111111111111111"
PAN_FORMS = (PAN, "4111 1111 1111 1111", "4111-1111-1111-1111", "411111******1111")
NAME, SURNAME = "Jane Q. Holderton", "Holderton"
EMAIL = "jane.holderton@example.com"
AMOUNTS = (1234.56, 987.65, 4321.09, 77.31)
PERSONAL = {
    "cardholder_name": NAME,
    "email": EMAIL,
    "card_number": PAN,
    "billing": {"name": NAME, "email": EMAIL, "pan": "4111 1111 1111 1111"},
}
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)


def transaction(user: str, index: int, amount: object = 5.0, **changes: object) -> dict[str, object]:
    """A valid transaction of the contract, with `changes` applied."""
    base: dict[str, object] = {
        "transaction_id": f"tx-{user}-{index}",
        "user_id": user,
        "merchant_id": f"merch-{index}",
        "amount": amount,
        "currency": "USD",
        "timestamp": (START + timedelta(minutes=10 * index)).isoformat(),
        "category": "grocery",
    }
    return {**base, **changes}


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


# Each malformed record carries card or personal data, and must be quarantined naming this field.
MALFORMED: list[tuple[str, bytes]] = [
    ("amount", _json({k: v for k, v in transaction("u-m1", 1, **PERSONAL).items() if k != "amount"})),
    ("amount", _json(transaction("u-m2", 1, PAN, **PERSONAL))),
    ("amount", _json(transaction("u-m3", 1, int(PAN)))),
    ("merchant_id", _json(transaction("u-m4", 1, merchant_id=NAME))),
    ("user_id", _json(transaction("u-m5", 1, user_id=NAME))),
    ("currency", _json(transaction("u-m6", 1, currency=PAN))),
    ("timestamp", _json(transaction("u-m7", 1, timestamp=PAN))),
    ("category", _json(transaction("u-m8", 1, category=NAME))),
    ("transaction_id", _json(transaction("u-m9", 1, transaction_id=f"{PAN} {EMAIL}"))),
    ("payload", f'{{"card_number": "{PAN}", "email": "{EMAIL}", '.encode()),
    ("payload", _json([PAN, NAME, EMAIL])),
    ("payload", b'{"card_number": "' + PAN.encode() + b'", "name": "\xff\xfe' + NAME.encode() + b'"}'),
    ("payload", _json(transaction("u-m10", 1, notes=f"{PAN} {NAME} {EMAIL} " * 200))),
]


def mixed_batch() -> dict[str, Any]:
    """Valid records (extras full of personal data, one far above its user's usual) mixed with MALFORMED."""
    valid = [
        transaction("u-v1", 1, AMOUNTS[0], **PERSONAL),
        transaction("u-v2", 1, AMOUNTS[1], **PERSONAL),
        transaction("u-v1", 2, AMOUNTS[3], **PERSONAL),
        transaction("u-v1", 3, AMOUNTS[2], card_number=PAN),
    ]
    arrival = datetime.now(UTC).timestamp()
    payloads = [(_json(tx), str(tx["user_id"]), arrival) for tx in valid[:2]]
    payloads += [(data, f"u-m{i}", arrival) for i, (_, data) in enumerate(MALFORMED)]
    payloads += [(_json(tx), str(tx["user_id"]), arrival) for tx in valid[2:]]
    return event_from_payloads(payloads)


@pytest.fixture(params=["INFO", "DEBUG"])
def log_level(request: pytest.FixtureRequest) -> Iterator[str]:
    """INFO, the default, and DEBUG: the most that the template's LogLevel lets the function say."""
    previous = service_logger.log_level
    service_logger.setLevel(request.param)
    yield request.param
    service_logger.setLevel(previous)


@pytest.fixture
def service_log() -> Iterator[io.StringIO]:
    """Powertools' JSON log lines, exactly as its handler formats them for CloudWatch Logs."""
    handler = service_logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    sink = io.StringIO()
    previous = handler.setStream(sink)
    yield sink
    handler.setStream(previous)


@pytest.fixture
def handler(stack, tiny_bundle, restore_environ, log_level):
    return load_handler(stack, bundle_dir=tiny_bundle, overrides={"POWERTOOLS_LOG_LEVEL": log_level})


AWS_ECHO = f"One or more parameter values were invalid: card_number {PAN}, amount {AMOUNTS[0]}, {EMAIL}"
"""An AWS error message echoing the request, as some do: the logs carry AWS's code, never its message."""


def fail_decision_writes(handler, table: str, times: int, code: str) -> None:
    """The decisions table answers `code` to the first `times` writes, with a message echoing card data
    (the stream's BatchWriteItem calls, the API's TransactWriteItems of a decision and its profile)."""
    wired = inspect.unwrap(handler).__globals__
    service = wired["service"] if "service" in wired else wired["scoring"].service  # the API's
    client = service._decisions._client
    left = {"n": times}

    def tables(body: dict[str, Any]) -> set[str]:
        actions = body.get("TransactItems", [])
        return set(body.get("RequestItems", {})) | {a["TableName"] for i in actions for a in i.values()}

    def fail(params, **kwargs):
        if table in tables(json.loads(params["body"])) and left["n"]:
            left["n"] -= 1
            error = {
                "Error": {"Code": code, "Message": AWS_ECHO},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            return AWSResponse("https://dynamodb", 400, HTTPHeaders(), None), error
        return None

    client.meta.events.register("before-call.dynamodb.BatchWriteItem", fail)
    client.meta.events.register("before-call.dynamodb.TransactWriteItems", fail)


def throttle_first_decision_writes(handler, table: str, times: int) -> None:
    """The decisions table answers ProvisionedThroughputExceeded to the first `times` writes."""
    fail_decision_writes(handler, table, times, "ProvisionedThroughputExceededException")


def everything_logged(service_log: io.StringIO, capfd, caplog) -> str:
    """Powertools' lines, stdout and stderr (EMF metrics, prints) and every log record with its extras."""
    out, err = capfd.readouterr()
    records = [json.dumps(vars(r), default=str) for r in caplog.records]
    return "\n".join([service_log.getvalue(), out, err, *records])


def test_no_card_or_personal_data_in_any_log_line(handler, stack, service_log, capfd, caplog, log_level):
    event = mixed_batch()
    throttle_first_decision_writes(handler, stack["DecisionsTableName"], times=4)
    first = handler(event, LocalContext())
    assert first["batchItemFailures"]  # the retry path logged too
    assert handler(event, LocalContext()) == {"batchItemFailures": []}  # the redelivery completes

    logged = everything_logged(service_log, capfd, caplog)
    assert_no_card_or_personal_data(logged, log_level)

    # The search saw the real output: the batch lines, the metrics, and ids and counts, which may appear.
    scored = batch_lines(service_log)
    assert len(scored) == 2
    assert {q["field"] for q in scored[0]["quarantined"]} == {field for field, _ in MALFORMED}
    assert scored[0]["retried"] == 4
    assert (scored[0]["level"], scored[1]["level"]) == ("WARNING", "INFO")
    assert scored[0]["errors"] == [
        {
            "type": "DecisionStoreError",
            "operation": "BatchWriteItem",
            "resource": stack["DecisionsTableName"],
            "code": "ProvisionedThroughputExceededException",
            "status": 400,
            "retryable": True,
            "unwritten": 4,
        }
    ]
    assert sum(scored[1]["decisions"].values()) == 4
    assert scored[1]["errors"] == []
    assert '"_aws"' in logged
    assert '"Quarantined"' in logged


def test_a_permanent_failure_is_logged_with_its_code_and_no_card_data(
    handler, stack, service_log, capfd, caplog, log_level
):
    """Access denied on the decisions table: one call, the batch's valid records failed (none dropped), and
    a line at ERROR naming the code; AWS's message, which echoes card data, stays out of the logs."""
    event = mixed_batch()
    fail_decision_writes(handler, stack["DecisionsTableName"], times=1, code="AccessDeniedException")

    first = handler(event, LocalContext())

    assert len(first["batchItemFailures"]) == 4  # the valid records, to be redelivered
    assert handler(event, LocalContext()) == {"batchItemFailures": []}  # once access is granted again
    logged = everything_logged(service_log, capfd, caplog)
    assert_no_card_or_personal_data(logged, log_level)
    assert "parameter values were invalid" not in logged
    failed, done = batch_lines(service_log)
    assert failed["level"] == "ERROR"
    assert failed["errors"] == [
        {
            "type": "DecisionStoreError",
            "operation": "BatchWriteItem",
            "resource": stack["DecisionsTableName"],
            "code": "AccessDeniedException",
            "status": 400,
            "retryable": False,
            "unwritten": 4,
        }
    ]
    assert (failed["retried"], done["level"], sum(done["decisions"].values())) == (4, "INFO", 4)


def batch_lines(service_log: io.StringIO) -> list[dict[str, Any]]:
    """The handler's "batch scored" lines, parsed."""
    lines = [json.loads(line) for line in service_log.getvalue().splitlines()]
    return [line for line in lines if line.get("message") == "batch scored"]


def assert_no_card_or_personal_data(logged: str, log_level: str) -> None:
    leaks = [s for s in (*PAN_FORMS, NAME, SURNAME, EMAIL, "jane.holderton") if s in logged]
    assert leaks == [], f"card or personal data in the logs at {log_level}"
    amounts = [a for a in AMOUNTS for form in (f"{a}", f"{a:.2f}", f"{a:,.2f}") if form in logged]
    assert amounts == [], f"amounts in the logs at {log_level}"


def test_malformed_records_with_card_data_are_quarantined_not_decided(handler, stack, service_log):
    """The records searched above took the intended paths: the bad ones to quarantine, the good decided."""
    assert handler(mixed_batch(), LocalContext()) == {"batchItemFailures": []}
    quarantined = [json.loads(m["Body"]) for m in drain(stack["QuarantineQueueUrl"])]
    assert [q["field"] for q in quarantined] == [field for field, _ in MALFORMED]
    items = boto3.client("dynamodb").scan(TableName=stack["DecisionsTableName"])["Items"]
    assert sorted(i["transaction_id"]["S"] for i in items) == [
        "tx-u-v1-1",
        "tx-u-v1-2",
        "tx-u-v1-3",
        "tx-u-v2-1",
    ]
    # Extras are ignored: nothing personal is stored with a decision.
    stored = json.dumps(items)
    assert [s for s in (PAN, NAME, EMAIL) if s in stored] == []


def test_the_function_never_logs_its_events() -> None:
    """Powertools would log every incoming event, payloads included, were event logging switched on."""
    function = load_template()["Resources"]["ScoringFunction"]["Properties"]
    variables = function["Environment"]["Variables"]
    assert str(variables.get("POWERTOOLS_LOGGER_LOG_EVENT", "false")).lower() == "false"
    assert "inject_lambda_context\n" in HANDLER_FILE.read_text()  # no log_event=True argument


@pytest.fixture
def api_handler(stack, tiny_bundle, restore_environ, log_level):
    return load_handler(
        stack,
        bundle_dir=tiny_bundle,
        overrides={"POWERTOOLS_LOG_LEVEL": log_level},
        function="ScoringApiFunction",
    )


def test_the_api_logs_no_card_or_personal_data_whatever_it_is_sent(
    api_handler, stack, service_log, capfd, caplog, log_level
):
    from infra.http_event import http_api_event

    def post(body: bytes, content_type: str = "application/json") -> dict[str, Any]:
        event = http_api_event("POST", "/v1/transactions", headers={"content-type": content_type}, body=body)
        response: dict[str, Any] = api_handler(event, LocalContext(function_name="ScoringApiFunction"))
        return response

    valid = transaction("u-api", 1, AMOUNTS[0], **PERSONAL)
    statuses = [post(_json(valid))["statusCode"], post(_json(valid))["statusCode"]]
    statuses += [post(data)["statusCode"] for _, data in MALFORMED]
    statuses.append(post(_json(valid), "text/plain")["statusCode"])
    throttle_first_decision_writes(api_handler, stack["DecisionsTableName"], times=4)
    statuses.append(post(_json(transaction("u-api", 2, AMOUNTS[1], **PERSONAL)))["statusCode"])

    assert statuses[:2] == [200, 200]
    assert set(statuses[2 : 2 + len(MALFORMED)]) <= {400, 413}
    assert statuses[-2:] == [415, 503]
    assert_no_card_or_personal_data(everything_logged(service_log, capfd, caplog), log_level)
    assert batch_lines(service_log)  # the decision made was logged: ids and counts


def test_the_api_function_never_logs_its_events() -> None:
    function = load_template()["Resources"]["ScoringApiFunction"]["Properties"]
    variables = function["Environment"]["Variables"]
    assert str(variables.get("POWERTOOLS_LOGGER_LOG_EVENT", "false")).lower() == "false"
    source = (HANDLER_FILE.parent.parent / "api" / "app.py").read_text()
    assert "log_event" not in source
