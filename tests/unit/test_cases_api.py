"""The review cases' routes and the console's pages on in-memory ports: statuses, the field at fault,
who did what, and no markup from a transaction's fields ever reaching a page."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest

from fraudwatch.adapters.memory import MemoryDecisionStore
from fraudwatch.console import CONTENT_SECURITY_POLICY, SCRIPT, case_page
from fraudwatch.domain.cases import CaseService, CaseStatus, open_case
from fraudwatch.domain.decision import Reason
from fraudwatch.http_api import build_app
from infra.http_event import http_api_event
from tests.unit.test_cases import NOW, Labels, Lists, MemoryCaseStore, decision

ANA = "arn:aws:sts::123456789012:assumed-role/Analyst/ana"
JSON = {"content-type": "application/json", "host": "console.example"}
HOSTILE = '<script>alert("x")</script>'


class _NoScoring:
    def decide(self, body: bytes) -> Any:
        raise AssertionError("not a scoring test")

    def decision(self, transaction_id: str) -> Any:
        return MemoryDecisionStore().get(transaction_id)

    def user_decisions(self, user_id: str, since: str | None, limit: int, after: str | None) -> Any:
        return MemoryDecisionStore().by_user(user_id, since, limit, after)


class Api:
    def __init__(self) -> None:
        self.store = MemoryCaseStore()
        self.store.open(open_case(decision(), [], "2026-09-21T12:00:00+00:00"))
        self.labels, self.lists = Labels(), Lists()
        self.app = build_app(
            _NoScoring(), cases=CaseService(self.store, self.labels, self.lists, clock=lambda: NOW)
        )

    def call(
        self, method: str, path: str, body: Any = None, *, caller: str | None = ANA, headers: Any = None
    ) -> dict[str, Any]:
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        path, _, query = path.partition("?")
        event = http_api_event(
            method, path, query=query, headers=JSON if headers is None else headers, body=data, caller=caller
        )
        response: dict[str, Any] = self.app.resolve(event, None)
        return response


@pytest.fixture
def api() -> Api:
    return Api()


def body(response: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(response["body"])
    return parsed


def test_assign_then_close_as_fraud_records_who_from_the_iam_identity(api: Api):
    assigned = api.call("POST", "/v1/cases/tx-1/assign", {"assignee": "bob"})
    closed = api.call("POST", "/v1/cases/tx-1/close", {"verdict": "fraud", "reason": "stolen", "block": True})

    assert (assigned["statusCode"], closed["statusCode"]) == (200, 200)
    case = body(closed)
    assert case["status"] == "CLOSED"
    assert (case["verdict"], case["closed_by"]) == ("fraud", "ana")
    assert [(e["action"], e["by"]) for e in case["history"]] == [
        ("opened", "fraudwatch"),
        ("assigned", "ana"),
        ("closed", "ana"),
        ("blocked", "ana"),
    ]
    assert case["block"]["outcome"] == "added"
    assert api.labels.put[0]["is_fraud"] is True
    assert api.lists.added[0].value == "user-1"


def test_a_verdict_changed_to_genuine_lifts_this_cases_block_and_the_body_says_so(api: Api):
    api.call("POST", "/v1/cases/tx-1/close", {"verdict": "fraud", "reason": "stolen", "block": True})

    changed = body(api.call("POST", "/v1/cases/tx-1/close", {"verdict": "genuine", "reason": "oops"}))

    assert api.lists.entries == {}
    assert changed["block"] == {
        "list": "blocked_users",
        "user": "user-1",
        "outcome": "lifted",
        "message": "user-1 is off blocked_users: this case's fraud verdict had put them there",
    }
    assert changed["history"][-1]["action"] == "block lifted"


def test_closing_again_with_the_same_verdict_answers_the_same_case(api: Api):
    first = api.call("POST", "/v1/cases/tx-1/close", {"verdict": "genuine", "reason": "known"})
    again = api.call("POST", "/v1/cases/tx-1/close", {"verdict": "genuine", "reason": "known"})
    assert body(first) == body(again)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"verdict": "maybe", "reason": "x"}, "verdict"),
        ({"verdict": "fraud"}, "reason"),
        ({"verdict": "fraud", "reason": ""}, "reason"),
        ({"verdict": "genuine", "reason": "ok", "block": True}, "block"),
        ({"verdict": "fraud", "reason": "x", "block": "yes"}, "block"),
        ({"verdict": "fraud", "reason": "x", "block": 1}, "block"),
        ({"verdict": "fraud", "reason": "x", "blok": True}, "blok"),
        (b"{not json", "body"),
    ],
)
def test_a_bad_close_is_a_400_naming_the_field(api: Api, payload: Any, field: str):
    response = api.call("POST", "/v1/cases/tx-1/close", payload)
    assert response["statusCode"] == 400
    assert body(response)["field"] == field
    assert api.store.cases["tx-1"].status is CaseStatus.OPEN


@pytest.mark.parametrize(
    ("route", "payload", "field"),
    [
        ("assign", {"assignee": "bob", "by": "someone-else"}, "by"),
        ("assign", {"assignee": 7}, "assignee"),
        ("comments", {"comment": "seen", "extra": 1}, "extra"),
    ],
)
def test_a_case_routes_body_is_strict_an_unknown_field_or_a_wrong_type_is_a_400_naming_it(
    api: Api, route: str, payload: Any, field: str
):
    response = api.call("POST", f"/v1/cases/tx-1/{route}", payload)
    assert (response["statusCode"], body(response)["field"]) == (400, field)
    assert api.store.cases["tx-1"].version == 0


def test_statuses_of_the_case_routes(api: Api):
    assert api.call("GET", "/v1/cases/tx-none")["statusCode"] == 404
    assert api.call("GET", "/v1/cases/tx-1", caller=None)["statusCode"] == 401
    assert api.call("GET", "/console", caller=None)["statusCode"] == 401
    text = {"content-type": "text/plain", "host": "console.example"}
    assert api.call("POST", "/v1/cases/tx-1/assign", {"assignee": "bob"}, headers=text)["statusCode"] == 415
    elsewhere = {**JSON, "origin": "https://evil.example"}
    refused = api.call("POST", "/v1/cases/tx-1/assign", {"assignee": "bob"}, headers=elsewhere)
    assert (refused["statusCode"], body(refused)["field"]) == (403, "origin")
    same_site = {**JSON, "origin": "https://console.example"}
    assert (
        api.call("POST", "/v1/cases/tx-1/assign", {"assignee": "bob"}, headers=same_site)["statusCode"] == 200
    )
    listed = body(api.call("GET", "/v1/cases"))
    assert [c["case_id"] for c in listed["cases"]] == ["tx-1"]
    assert body(api.call("GET", "/v1/cases?status=CLOSED"))["cases"] == []


@pytest.mark.parametrize(
    ("query", "field", "says"),
    [
        ("reason=nope", "reason", "no feature is named 'nope': they are "),
        ("rule=night-spend", "rule", "give a rule as rule:<id> or a list as list:<name>"),
        ("rule=rule:", "rule", "give a rule as rule:<id>"),
    ],
)
def test_a_queue_filter_that_can_match_nothing_is_a_400_naming_it_as_the_command_line_refuses_it(
    api: Api, query: str, field: str, says: str
):
    response = api.call("GET", f"/v1/cases?{query}")
    assert (response["statusCode"], body(response)["field"]) == (400, field)
    assert says in body(response)["reason"]
    assert body(api.call("GET", "/v1/cases?reason=amount_zscore&rule=rule:big-night"))["cases"]


@pytest.mark.parametrize("status", ["open", "OPEN", "Open"])
def test_the_queues_status_is_taken_in_either_case_as_the_command_line_takes_it(api: Api, status: str):
    listed = api.call("GET", f"/v1/cases?status={status}")
    assert listed["statusCode"] == 200
    assert [c["case_id"] for c in body(listed)["cases"]] == ["tx-1"]
    refused = api.call("GET", "/v1/cases?status=pending")
    assert (refused["statusCode"], body(refused)["field"]) == (400, "status")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "image/png"])
@pytest.mark.parametrize(
    ("route", "payload"),
    [("assign", b"assignee=bob"), ("close", b'{"verdict": "fraud", "reason": "x"}'), ("comments", b"")],
)
def test_a_body_that_is_not_json_is_a_415_in_the_apis_own_error_shape(
    api: Api, content_type: str, route: str, payload: bytes
):
    headers = {"content-type": content_type, "host": "console.example"}
    response = api.call("POST", f"/v1/cases/tx-1/{route}", payload, headers=headers)
    assert response["statusCode"] == 415
    assert body(response) == {
        "error": "unsupported media type",
        "field": "content-type",
        "reason": "send the body as application/json",
    }
    assert api.store.cases["tx-1"].status is CaseStatus.OPEN


@pytest.mark.parametrize("route", ["assign", "comments", "close"])
def test_a_body_nested_deeper_than_the_parser_goes_is_a_400_not_a_crash(api: Api, route: str):
    deep = b"[" * 100_000 + b"]" * 100_000
    response = api.call("POST", f"/v1/cases/tx-1/{route}", deep)
    assert response["statusCode"] == 400
    assert body(response) == {
        "error": "invalid",
        "field": "body",
        "reason": "objects or arrays nested too deep",
    }
    assert api.store.cases["tx-1"].status is CaseStatus.OPEN


def test_a_case_changed_meanwhile_is_a_409_and_nothing_of_the_stale_change_is_written(api: Api):
    read = api.store.cases["tx-1"]
    api.call("POST", "/v1/cases/tx-1/assign", {"assignee": "bob"})  # someone else, after our read
    stale = CaseService(_Stale(api.store, read), api.labels, clock=lambda: NOW)
    api.app = build_app(_NoScoring(), cases=stale)

    response = api.call("POST", "/v1/cases/tx-1/close", {"verdict": "fraud", "reason": "seen"})

    assert (response["statusCode"], body(response)["field"]) == (409, "version")
    assert api.store.cases["tx-1"].assignee == "bob"
    assert api.store.cases["tx-1"].status is CaseStatus.OPEN
    assert api.labels.put == []  # no label for a verdict that was not recorded


class _Stale(MemoryCaseStore):
    """Reads the case as it was before someone else's change."""

    def __init__(self, real: MemoryCaseStore, read: Any) -> None:
        super().__init__()
        self.cases, self._read = real.cases, read

    def get(self, case_id: str) -> Any:
        return self._read


def test_the_pages_show_a_transactions_fields_as_text_never_as_markup(api: Api):
    hostile = decision(
        "tx-<i>",
        merchant_id=HOSTILE.replace(" ", ""),
        reasons=(Reason(HOSTILE, 1.0, 0.5),),
        rule_reasons=(HOSTILE,),
    )
    api.store.open(
        open_case(hostile, [hostile._replace(transaction_id="<b>old</b>")], "2026-09-21T12:00:00+00:00")
    )
    api.call("POST", "/v1/cases/tx-%3Ci%3E/comments", {"comment": HOSTILE})

    queue = api.call("GET", "/console")
    page = api.call("GET", "/console/cases/tx-%3Ci%3E")

    for response in (queue, page):
        assert response["statusCode"] == 200
        assert response["headers"]["Content-Type"].startswith("text/html")
        html = response["body"]
        assert "<script>alert" not in html
        assert "<b>old" not in html
        assert "<i>" not in html
        assert "&lt;script&gt;alert(" in html
        assert len(re.findall(r"<script>", html)) == 1  # the console's own, nothing else
    assert "tx-%3Ci%3E" in queue["body"]  # the link is the escaped id


def test_the_content_security_policy_admits_the_consoles_script_alone(api: Api):
    page = api.call("GET", "/console/cases/tx-1")
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert page["headers"]["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert f"'sha256-{digest}'" in CONTENT_SECURITY_POLICY
    assert f"<script>{SCRIPT}</script>" in page["body"]  # exactly the hashed text
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


def test_a_page_labels_every_field_and_has_one_main_heading(api: Api):
    html = case_page(api.store.cases["tx-1"], "ana")
    for field in re.findall(r'<(?:input|textarea)[^>]*id="([^"]+)"', html):
        assert re.search(rf'<label for="{field}"|<label><input[^>]*id="{field}"', html), field
    assert html.count("<h1>") == 1
    assert api.call("GET", "/console/cases/tx-none")["statusCode"] == 404


@pytest.mark.parametrize(
    ("path", "says"),
    [("/console/cases/a%20b", "case_id: "), ("/console?reason=nope", "reason: no feature is named")],
)
def test_a_pages_bad_input_is_an_html_400_page_in_the_consoles_style(api: Api, path: str, says: str):
    response = api.call("GET", path)
    assert response["statusCode"] == 400
    assert response["headers"]["Content-Type"].startswith("text/html")
    assert response["headers"]["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    html = response["body"]
    assert html.count("<h1>") == 1
    assert says in html
    assert '<a href="/console">' in html
    assert api.call("GET", "/v1/cases/a%20b")["headers"]["Content-Type"].startswith("application/json")


def test_the_consoles_filter_form_sent_with_empty_fields_filters_on_the_others_only(api: Api):
    response = api.call("GET", "/console?reason=&rule=&merchant=merch-1")  # as the form submits it
    assert response["statusCode"] == 200
    assert "tx-1" in response["body"]
