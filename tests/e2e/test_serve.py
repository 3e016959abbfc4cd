"""`fraudwatch serve` on the embedded stack, through real HTTP: curl for the main flow, and schemathesis
generating requests from the OpenAPI document, against which the server must never answer a 5xx."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from infra.serve import Containers, serving
from tests.e2e.conftest import Embedded

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base_url(embedded: Embedded, tiny_bundle: Any) -> Iterator[str]:
    """The local server on a free port, two handler instances, on the session's embedded stack."""
    containers = Containers.load(embedded.outputs, embedded.endpoint_url, tiny_bundle, count=2)
    with serving(containers) as url:
        yield url


def curl(*args: str) -> tuple[int, dict[str, Any]]:
    """Run curl; the HTTP status and the JSON body."""
    done = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_curl_a_payment_twice_then_get_it_and_the_users_decisions(base_url: str):
    user = f"user-curl-{uuid.uuid4().hex[:8]}"
    payment = {
        "transaction_id": f"tx-curl-{uuid.uuid4().hex[:8]}",
        "user_id": user,
        "merchant_id": "merch-curl",
        "amount": 1234.5,
        "currency": "GBP",
        "timestamp": datetime.fromtimestamp(time.time() - 30, UTC).isoformat(),
        "category": "electronics",
    }
    post = ["-X", "POST", f"{base_url}/v1/transactions", "-H", "content-type: application/json"]

    first = curl(*post, "-d", json.dumps(payment))
    again = curl(*post, "-d", json.dumps(payment))
    by_id = curl(f"{base_url}/v1/decisions/{payment['transaction_id']}")
    listed = curl(f"{base_url}/v1/users/{user}/decisions?limit=10")

    assert first[0] == again[0] == by_id[0] == listed[0] == 200
    assert first[1] == again[1] == by_id[1]
    assert first[1]["decision"] in {"APPROVED", "FLAGGED", "REJECTED"}
    assert [d["transaction_id"] for d in listed[1]["decisions"]] == [payment["transaction_id"]]
    assert listed[1]["next"] is None


def test_curl_bad_requests_get_their_status_and_the_field(base_url: str):
    post = ["-X", "POST", f"{base_url}/v1/transactions"]
    assert curl(*post, "-H", "content-type: text/plain", "-d", "{}")[0] == 415
    status, body = curl(*post, "-H", "content-type: application/json", "-d", '{"amount": -1}')
    assert (status, body["field"]) == (400, "transaction_id")
    assert curl(*post, "-H", "content-type: application/json", "-d", "x" * 5000)[0] == 413
    assert curl(f"{base_url}/v1/decisions/tx-never-seen")[0] == 404


OPERATIONS = [
    ("POST", "/v1/transactions"),
    ("GET", "/v1/decisions/{transaction_id}"),
    ("GET", "/v1/users/{user_id}/decisions"),
    ("GET", "/v1/cases"),
    ("GET", "/v1/cases/{case_id}"),
    ("POST", "/v1/cases/{case_id}/assign"),
    ("POST", "/v1/cases/{case_id}/comments"),
    ("POST", "/v1/cases/{case_id}/close"),
]


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_request_the_openapi_document_describes_gets_a_server_error(base_url: str, method: str, path: str):
    """Schemathesis reads the server's own document and generates requests for one operation, valid and
    not (bodies, path and query parameters); every answer must be below 500."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = {(op.method.upper(), op.path): op for op in (r.ok() for r in schema.get_all_operations())}  # type: ignore[union-attr]
    assert set(operations) == set(OPERATIONS)  # the document the server serves names every route
    statuses: list[int] = []

    @given(case=operations[(method, path)].as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def call(case: Any) -> None:
        response = case.call_and_validate(base_url=base_url, checks=[not_a_server_error])
        statuses.append(response.status_code)

    call()
    assert statuses
    assert max(statuses) < 500


def test_one_clients_requests_meet_one_warm_handler_and_concurrent_ones_each_their_own():
    served: list[str] = []
    entered, release = threading.Barrier(3), threading.Event()  # the two requests and the test

    def handler(name: str) -> Any:
        def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
            served.append(name)
            if event.get("wait"):
                entered.wait(5)
                release.wait(5)
            return {"statusCode": 200}

        return handle

    containers = Containers.of([handler("a"), handler("b")])
    for _ in range(3):
        containers.invoke({})
    assert served == ["b", "b", "b"]  # one after another: the same handler, as one Lambda environment

    served.clear()
    both = [threading.Thread(target=containers.invoke, args=({"wait": True},)) for _ in range(2)]
    for thread in both:
        thread.start()
    entered.wait(5)
    release.set()
    for thread in both:
        thread.join(5)
    assert sorted(served) == ["a", "b"]  # at once: one each


def test_a_failing_function_is_a_500_as_api_gateway_answers_and_the_server_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import urllib.error
    import urllib.request

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["rawPath"] == "/boom":
            raise RuntimeError("the function failed")
        return {"statusCode": 200, "body": "{}"}

    with serving(Containers.of([handle]), log=False) as url:
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"{url}/boom", timeout=10)
        assert failed.value.code == 500
        assert json.loads(failed.value.read()) == {"message": "Internal Server Error"}
        with urllib.request.urlopen(f"{url}/fine", timeout=10) as answer:
            assert answer.status == 200
    assert "RuntimeError: the function failed" in capsys.readouterr().err


def test_head_and_options_reach_the_function_and_a_head_answer_has_no_body(base_url: str) -> None:
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(base_url)
    connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=30)
    try:
        connection.request("OPTIONS", "/v1/transactions")
        options = connection.getresponse()
        assert options.status == 404  # no route: the API's JSON error, not an HTML 501
        assert json.loads(options.read())["field"] == "path"
        connection.request("HEAD", "/v1/decisions/tx-none")
        head = connection.getresponse()
        assert (head.status, head.read()) == (404, b"")
        connection.request("GET", "/v1/decisions/tx-none")  # the same connection: nothing left over
        after = connection.getresponse()
        assert after.status == 404
        assert json.loads(after.read())["error"] == "not found"
    finally:
        connection.close()
