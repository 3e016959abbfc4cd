"""Rules and lists end to end: the commands against the embedded stack, the real handler deciding.

A merchant blocked with `fraudwatch lists add` rejects the next payment there, named by its list; a
pushed rules document is recorded with the decisions; a broken one is refused at push and the version
in force keeps deciding.
"""

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fraudwatch.adapters.dynamodb import decision_of
from infra.cli import main
from infra.events import event_from_transactions
from infra.http_event import http_api_event
from infra.invoke import Handler, LocalContext
from tests.e2e.conftest import Embedded, loaded

MAX_AGE_S = 1.0
"""The handler's cache of rules and lists here (30 s in the template), so the test waits little."""
MERCHANT = "merch-rules-e2e"


def _load(embedded: Embedded, bundle: Path, function: str) -> Handler:
    """A function's real handler on the embedded stack, its rules and lists cached for MAX_AGE_S."""
    settings = {"CONTROLS_MAX_AGE_SECONDS": str(MAX_AGE_S)}
    return loaded(embedded.outputs, bundle, embedded.endpoint_url, function, settings)


@pytest.fixture(scope="module")
def handler(embedded: Embedded, tiny_bundle: Path) -> Handler:
    """The stream's handler."""
    return _load(embedded, tiny_bundle, "ScoringFunction")


@pytest.fixture(scope="module")
def api_handler(embedded: Embedded, tiny_bundle: Path) -> Handler:
    """The inline API's handler."""
    return _load(embedded, tiny_bundle, "ScoringApiFunction")


@pytest.fixture
def outputs_file(embedded: Embedded, tmp_path: Path) -> str:
    """The stack's outputs as `fraudwatch stack up --detach` records them."""
    path = tmp_path / "stack.json"
    path.write_text(json.dumps({"outputs": embedded.outputs, "endpoint_url": embedded.endpoint_url}))
    return str(path)


class Payments:
    """Payments of one user at MERCHANT, each decided by the handler as its own batch."""

    def __init__(self, embedded: Embedded, handler: Handler, user: str) -> None:
        self.embedded, self.handler, self.user, self.sent = embedded, handler, user, 0

    def pay(self, amount: float = 12.5) -> dict[str, Any]:
        """Send one payment; return its stored decision."""
        self.sent += 1
        tx = {
            "transaction_id": f"{self.user}-tx-{self.sent}",
            "user_id": self.user,
            "merchant_id": MERCHANT,
            "amount": amount,
            "currency": "EUR",
            "timestamp": datetime.now(UTC).isoformat(),
            "category": "electronics",
        }
        response = self.handler(event_from_transactions([tx], first_sequence=self.sent), LocalContext())
        assert response == {"batchItemFailures": []}
        item: dict[str, Any] = self.embedded.client("dynamodb").get_item(
            TableName=self.embedded.outputs["DecisionsTableName"],
            Key={"transaction_id": {"S": tx["transaction_id"]}},
            ConsistentRead=True,
        )["Item"]
        return item


@pytest.fixture
def no_rules_after(outputs_file: str, tmp_path: Path) -> Iterator[None]:
    """The session's other tests share the stack: leave no rule in force."""
    yield
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"version": "e2e-none", "rules": []}))
    assert main(["rules", "push", str(empty), "--outputs", outputs_file]) == 0


def stale() -> None:
    """Wait until the handler's cached rules and lists are due to be read again."""
    time.sleep(MAX_AGE_S + 0.1)


def test_a_merchant_blocked_with_one_command_rejects_the_next_payment_there(
    embedded: Embedded, handler: Handler, outputs_file: str
):
    payments = Payments(embedded, handler, "user-rules-e2e-1")
    before = payments.pay()
    assert "list:blocked_merchants" not in decision_of(before).rule_reasons

    assert main(["lists", "add", "blocked_merchants", MERCHANT, "--why", "card testing seen",
                 "--expires", "1d", "--outputs", outputs_file]) == 0  # fmt: skip
    stale()
    after = payments.pay()
    assert after["decision"]["S"] == "REJECTED"
    assert decision_of(after).rule_reasons == ("list:blocked_merchants",)

    assert main(["lists", "remove", "blocked_merchants", MERCHANT, "--outputs", outputs_file]) == 0
    stale()
    assert "list:blocked_merchants" not in decision_of(payments.pay()).rule_reasons


def test_the_inline_api_rejects_a_payment_at_a_blocked_merchant_too(
    embedded: Embedded, api_handler: Handler, outputs_file: str
):
    merchant = "merch-rules-e2e-api"

    def post(n: int) -> dict[str, Any]:
        body = {
            "transaction_id": f"api-rules-e2e-{n}",
            "user_id": "user-rules-e2e-api",
            "merchant_id": merchant,
            "amount": 12.5,
            "currency": "EUR",
            "timestamp": datetime.now(UTC).isoformat(),
            "category": "electronics",
        }
        event = http_api_event(
            "POST",
            "/v1/transactions",
            headers={"content-type": "application/json"},
            body=json.dumps(body).encode(),
        )
        response = api_handler(event, LocalContext(function_name="ScoringApiFunction"))
        assert response["statusCode"] == 200, response
        answer: dict[str, Any] = json.loads(response["body"])
        return answer

    assert "list:blocked_merchants" not in post(1)["rule_reasons"]
    assert main(["lists", "add", "blocked_merchants", merchant, "--why", "seen in a fraud ring",
                 "--outputs", outputs_file]) == 0  # fmt: skip
    stale()
    try:
        blocked = post(2)
        assert blocked["decision"] == "REJECTED"
        assert blocked["rule_reasons"] == ["list:blocked_merchants"]
    finally:
        assert main(["lists", "remove", "blocked_merchants", merchant, "--outputs", outputs_file]) == 0


def test_a_broken_rules_document_is_refused_and_the_version_in_force_keeps_deciding(
    embedded: Embedded,
    handler: Handler,
    outputs_file: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_rules_after: None,
):
    good, broken = tmp_path / "good.yaml", tmp_path / "broken.yaml"
    good.write_text(
        "version: e2e-1\nrules:\n  - id: big_electronics\n    description: big electronics payments\n"
        "    condition: tx.category == 'electronics' && tx.amount > 900.0\n    action: review\n"
    )
    broken.write_text(
        "version: e2e-2\nrules:\n  - id: big_electronics\n    description: big electronics payments\n"
        "    condition: tx.category == 'electronics' && tx.amount >\n    action: block\n"
    )
    payments = Payments(embedded, handler, "user-rules-e2e-2")
    assert main(["rules", "push", str(good), "--outputs", outputs_file]) == 0
    stale()
    decided = payments.pay(amount=950.0)
    assert decided["rules_version"]["S"] == "e2e-1"
    assert "rule:big_electronics" in decision_of(decided).rule_reasons
    assert decided["decision"]["S"] in {"FLAGGED", "REJECTED"}

    capsys.readouterr()
    assert main(["rules", "push", str(broken), "--outputs", outputs_file]) == 2
    assert "rule 'big_electronics' (condition line 1" in capsys.readouterr().err
    stale()
    still = payments.pay(amount=950.0)
    assert still["rules_version"]["S"] == "e2e-1"
    assert "rule:big_electronics" in decision_of(still).rule_reasons
