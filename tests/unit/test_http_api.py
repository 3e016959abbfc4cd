"""The inline API's routes on in-memory stores: statuses, bodies, idempotence, and no traceback ever."""

import json
from typing import Any

import pytest

from fraudwatch.adapters.memory import MemoryAlertPublisher, MemoryDecisionStore, MemoryQuarantine
from fraudwatch.domain.inline import InlineScoring
from fraudwatch.domain.scoring import ScoringService
from fraudwatch.domain.transaction import MAX_PAYLOAD_BYTES
from fraudwatch.errors import ProfileStoreError
from fraudwatch.http_api import build_app
from infra.http_event import http_api_event
from tests.fakes import FakeProfileStore
from tests.unit.test_scoring import T0, AmountModel, record

JSON = {"content-type": "application/json"}


class Api:
    def __init__(self) -> None:
        self.decisions = MemoryDecisionStore()
        self.profiles = FakeProfileStore(self.decisions)
        self.alerts = MemoryAlertPublisher()
        service = ScoringService(
            profiles=self.profiles,
            decisions=self.decisions,
            alerts=self.alerts,
            quarantine=MemoryQuarantine(),
            model=AmountModel(),
            clock=lambda: T0 + 60,
        )
        self.app = build_app(InlineScoring(service, self.decisions, clock=lambda: T0 + 60))

    def call(self, method: str, path: str, body: bytes = b"", headers=None, query: str = "") -> Any:
        event = http_api_event(
            method, path, query=query, headers=JSON if headers is None else headers, body=body
        )
        return self.app.resolve(event, None)


def payment(
    tx: str = "tx-1", user: str = "user-1", amount: float = 20.0, minutes: float = 0, **changes
) -> bytes:
    """A valid transaction's JSON (test_scoring's record), under its own id."""
    return record(0, user=user, amount=amount, minutes=minutes, transaction_id=tx, **changes).data


@pytest.fixture
def api() -> Api:
    return Api()


def body_of(response: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(response["body"])
    return parsed


def test_a_payment_is_decided_and_the_same_one_posted_again_gets_the_same_decision(api: Api):
    first = api.call("POST", "/v1/transactions", payment(amount=700))
    again = api.call("POST", "/v1/transactions", payment(amount=700))

    assert first["statusCode"] == again["statusCode"] == 200
    assert body_of(first) == body_of(again)
    assert body_of(first)["decision"] == "FLAGGED"
    assert set(body_of(first)) >= {
        "decision",
        "score",
        "reasons",
        "model_version",
        "thresholds",
        "decided_at",
    }
    assert api.profiles.get_many(["user-1"]).users["user-1"].count == 1
    assert [a.transaction_id for a in api.alerts.published] == ["tx-1"]


def test_a_decision_is_read_back_by_its_id_in_any_script_and_an_unknown_one_is_404(api: Api):
    api.call("POST", "/v1/transactions", payment(tx="tx-café-東京"))
    found = api.call("GET", "/v1/decisions/tx-caf%C3%A9-%E6%9D%B1%E4%BA%AC", headers={})
    missing = api.call("GET", "/v1/decisions/tx-unknown", headers={})

    assert (found["statusCode"], body_of(found)["transaction_id"]) == (200, "tx-café-東京")
    assert missing["statusCode"] == 404
    assert body_of(missing)["field"] == "transaction_id"


def test_a_users_decisions_come_newest_first_a_page_at_a_time(api: Api):
    for i in range(5):
        api.call("POST", "/v1/transactions", payment(f"tx-{i}", minutes=i))
    seen, cursor = [], None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = body_of(api.call("GET", "/v1/users/user-1/decisions", headers={}, query=query))
        seen += [d["transaction_id"] for d in page["decisions"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert sorted(seen) == [f"tx-{i}" for i in range(5)]
    assert len(seen) == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (payment(amount=-5), "amount"),
        (payment(currency="XXX"), "currency"),
        (b"{not json", "payload"),
        (b"[1, 2]", "payload"),
        (json.dumps({"transaction_id": "tx-1"}).encode(), "user_id"),
        (payment(event="label"), "event"),
        (b"\xff\xfe{}", "payload"),
    ],
)
def test_an_invalid_payment_is_400_naming_the_field_and_changes_nothing(api: Api, body: bytes, field: str):
    response = api.call("POST", "/v1/transactions", body)

    assert response["statusCode"] == 400
    assert body_of(response)["field"] == field
    assert "Traceback" not in response["body"]
    assert api.profiles.items == {}
    assert api.decisions.items == {}


def test_a_body_over_the_limit_is_413_and_another_content_type_is_415(api: Api):
    big = payment(note="x" * MAX_PAYLOAD_BYTES)
    assert api.call("POST", "/v1/transactions", big)["statusCode"] == 413
    text = api.call("POST", "/v1/transactions", payment(), headers={"content-type": "text/plain"})
    assert text["statusCode"] == 415
    assert api.call("POST", "/v1/transactions", payment(), headers={})["statusCode"] == 415
    with_charset = api.call(
        "POST", "/v1/transactions", payment(), headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert with_charset["statusCode"] == 200


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/v1/users/user-1/decisions", "limit=0", "limit"),
        ("/v1/users/user-1/decisions", "limit=many", "limit"),
        ("/v1/users/user-1/decisions", "since=yesterday", "since"),
        ("/v1/users/user-1/decisions", "cursor=%2A%2A", "cursor"),
        ("/v1/users/user%201/decisions", "", "user_id"),
        ("/v1/users/%FF/decisions", "", "user_id"),
        ("/v1/decisions/%FF%FE", "", "transaction_id"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(api: Api, path: str, query: str, field: str):
    response = api.call("GET", path, headers={}, query=query)
    assert response["statusCode"] == 400
    assert body_of(response)["field"] == field


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/nope"), ("GET", "/v1/transactions"), ("DELETE", "/v1/decisions/tx-1")]
)
def test_a_route_that_does_not_exist_is_a_404_in_the_apis_own_error_shape(api: Api, method: str, path: str):
    response = api.call(method, path)
    assert response["statusCode"] == 404
    assert body_of(response) == {"error": "not found", "field": "path", "reason": f"no route {method} {path}"}


def test_a_since_whose_plus_became_a_space_says_how_to_send_the_offset(api: Api):
    response = api.call(
        "GET", "/v1/users/user-1/decisions", headers={}, query="since=2026-01-01T00:00:00+00:00"
    )
    assert response["statusCode"] == 400
    assert body_of(response) == {
        "error": "invalid",
        "field": "since",
        "reason": "not an ISO 8601 date-time: a '+' in a query string is a space, "
        "write it %2B (or the offset Z)",
    }
    escaped = api.call(
        "GET", "/v1/users/user-1/decisions", headers={}, query="since=2026-01-01T00:00:00%2B00:00"
    )
    assert escaped["statusCode"] == 200


def test_a_store_failure_is_503_with_retry_after_and_the_profile_unchanged(api: Api):
    api.profiles.raise_next = ProfileStoreError("ThrottlingException", operation="BatchGetItem")
    response = api.call("POST", "/v1/transactions", payment())

    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "1"
    assert api.profiles.items == {}
    assert api.call("POST", "/v1/transactions", payment())["statusCode"] == 200  # asked again: decided


def test_a_failed_profile_write_leaves_no_decision_and_asked_again_the_alert_goes_once(api: Api):
    flagged = payment(amount=900)  # AmountModel flags it
    api.profiles.fail_next = {"user-1"}  # the transaction of its decision and its profile fails
    response = api.call("POST", "/v1/transactions", flagged)

    assert response["statusCode"] == 503
    assert (api.profiles.items, api.decisions.items) == ({}, {})  # neither: they are written together
    assert [d.transaction_id for d in api.alerts.published] == ["tx-1"]  # the alert went first
    again = api.call("POST", "/v1/transactions", flagged)
    assert again["statusCode"] == 200
    assert body_of(again)["decision"] == "FLAGGED"
    assert set(api.decisions.items) == {"tx-1"}
    # published again with the same alert id: the topic's deduplication drops it (adapters/sns.py)
    assert [d.transaction_id for d in api.alerts.published] == ["tx-1", "tx-1"]


def test_the_committed_openapi_document_is_the_one_the_code_generates():
    from fraudwatch.http_api import openapi_document
    from infra.template import REPO_ROOT

    committed = (REPO_ROOT / "docs" / "openapi.json").read_text()
    assert committed == openapi_document(), "run `fraudwatch openapi` and commit docs/openapi.json"
