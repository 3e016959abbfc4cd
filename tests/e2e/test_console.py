"""The analysts' console in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
which `make test` installs) driven by Selenium against `fraudwatch serve` on an embedded stack of its own,
with the scoring handler and the cases function behind their local runners.

Payments go on the stream; the alerted ones reach the cases queue through the alerts topic and open
cases (REJECTED ones too: the stack is deployed with ReviewRejected); the test opens the queue, opens a
case with the keyboard, closes it as fraud, and waits for the verdict's label to reach the merchant's
profile, counted from the midnight after it was given.
The screenshot it takes of the closed case is the README's (FRAUDWATCH_SCREENSHOT=docs/console.png).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fraudwatch.adapters.cases import DynamoCaseStore
from fraudwatch.adapters.dynamodb import DynamoProfileStore
from fraudwatch.domain.cases import QueueFilter
from fraudwatch.domain.features import DAY, MERCHANT_FEATURES, merchant_features
from infra.deploy import deploy
from infra.embedded import start_handler
from infra.emulator import Emulator, client, emulator_environment
from infra.state import write_state
from infra.template import REPO_ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1500",
)
HOSTILE_MERCHANT = "<b>merch&co</b>"
"""A merchant id a producer may send (ids allow any printable text without spaces): text on the page."""
WAIT_S = 90


def _wait(what: str, check: Any, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def stack(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A stack of its own (its stream is read by a runner), REJECTED decisions reviewed too: the tiny
    model's score of a payment far above the user's usual is over the reject threshold."""
    saved = dict(os.environ)
    with Emulator() as emulator:
        os.environ.update(emulator_environment(emulator.endpoint_url))
        outputs = deploy(
            emulator.endpoint_url,
            stack_name="fraudwatch-console",
            parameters={"Stage": "console", "ReviewRejected": "true"},
        )
        running = start_handler(outputs, emulator.endpoint_url, tiny_bundle)
        state = tmp_path_factory.mktemp("console") / "stack.json"
        write_state(emulator.endpoint_url, "fraudwatch-console", outputs, path=state)
        try:
            yield {"endpoint": emulator.endpoint_url, "outputs": outputs, "state": state}
        finally:
            running.close()
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture(scope="module")
def served(stack: dict[str, Any], tiny_bundle: Path) -> Iterator[str]:
    """`fraudwatch serve` on that stack, as a user runs it; its URL."""
    command = [sys.executable, "-m", "infra.cli", "serve", "--port", "0", "--containers", "1"]
    command += ["--outputs", str(stack["state"]), "--bundle", str(tiny_bundle)]
    server = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("the inline API on http://127.0.0.1:"), first
        yield first.split()[4]
    finally:
        server.terminate()
        server.wait(timeout=30)


def put_payments(outputs: dict[str, str], user: str, merchant: str) -> str:
    """Two ordinary payments, then one far above them (alerted); the big one's id."""
    now = time.time()
    payments = [
        {
            "transaction_id": f"tx-{user}-{i}",
            "user_id": user,
            "merchant_id": merchant,
            "amount": amount,
            "currency": "EUR",
            "timestamp": datetime.fromtimestamp(now - 60 + i, UTC).isoformat(),
            "category": "electronics",
        }
        for i, amount in enumerate([12.5, 14.0, 4800.0])
    ]
    kinesis = client("kinesis", os.environ["AWS_ENDPOINT_URL"])
    for payment in payments:  # one at a time: the user's order on the shard
        kinesis.put_record(
            StreamName=outputs["StreamName"], Data=json.dumps(payment).encode(), PartitionKey=user
        )
    return str(payments[-1]["transaction_id"])


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).exists(), "run `make browser` (apt: chromium chromium-driver)"
    assert Path(CHROMEDRIVER).exists(), "run `make browser` (apt: chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_an_analyst_closes_a_case_as_fraud_in_the_console_and_the_merchant_learns_it(
    stack: dict[str, Any], served: str, browser: Any, tmp_path: Path
):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    def after_navigation() -> Any:
        """A wait across a page load: an element found in the old page may be gone before its text is
        read (chromium: "Node with given id does not belong to the document"), so look again."""
        return WebDriverWait(browser, 30, ignored_exceptions=(WebDriverException,))

    outputs = stack["outputs"]
    run = uuid.uuid4().hex[:6]
    merchant = f"merch-console-{run}"
    flagged = put_payments(outputs, f"user-a-{run}", merchant)
    hostile = put_payments(outputs, f"user-b-{run}", HOSTILE_MERCHANT)
    cases = DynamoCaseStore(outputs["CasesTableName"])
    _wait(
        "the two alerted payments' cases",
        lambda: {flagged, hostile} <= {c.case_id for c in cases.queue(QueueFilter(), 100, None).cases},
    )

    browser.get(f"{served}/console")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Open cases"
    assert HOSTILE_MERCHANT in browser.find_element(By.TAG_NAME, "table").text  # shown as text...
    assert not browser.find_elements(By.CSS_SELECTOR, "td b")  # ...never as markup
    browser.find_element(By.LINK_TEXT, flagged).send_keys(Keys.ENTER)  # the keyboard opens a case

    after_navigation().until(ready.text_to_be_present_in_element((By.TAG_NAME, "h1"), flagged))
    payment = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=payment]").text
    assert merchant in payment
    assert "4,800.00 EUR" in payment
    recent = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=recent]").text
    assert f"tx-user-a-{run}-0" in recent
    assert f"tx-user-a-{run}-1" in recent
    assert browser.find_elements(By.CSS_SELECTOR, "section[aria-labelledby=reasons] tbody tr")
    browser.find_element(By.ID, "verdict-fraud").click()
    browser.find_element(By.ID, "reason").send_keys("cardholder denies the payment")
    browser.find_element(By.ID, "close").click()

    after_navigation().until(ready.text_to_be_present_in_element((By.ID, "case-status"), "CLOSED: fraud"))
    history = browser.find_element(By.ID, "history-list").text
    assert "closed: fraud: cardholder denies the payment" in history
    browser.execute_script("window.scrollTo(0, 0)")  # the reload keeps the scroll of the form
    screenshot = Path(os.environ.get("FRAUDWATCH_SCREENSHOT") or tmp_path / "console.png")
    assert browser.save_screenshot(str(screenshot))
    closed_at = time.time()

    profiles = DynamoProfileStore(outputs["ProfilesTableName"], outputs["MerchantProfilesTableName"])

    def learnt() -> Any:
        profile = profiles.get_many([], [merchant]).merchants.get(merchant)
        return profile if profile and f"{flagged}:fraud" in profile.applied_ids else None

    profile = _wait("the verdict's label in the merchant's profile", learnt)
    day = int(closed_at // DAY)
    on_the_day = dict(zip(MERCHANT_FEATURES, merchant_features(profile, day), strict=True))
    next_day = dict(zip(MERCHANT_FEATURES, merchant_features(profile, day + 1), strict=True))
    assert on_the_day["merchant_labels_1d"] == 0  # known today: it counts from midnight
    assert next_day["merchant_labels_1d"] == 1
    assert next_day["merchant_fraud_rate_1d"] == 1.0
    untouched = cases.get(hostile)
    assert untouched is not None
    assert untouched.status.value == "OPEN"


def test_the_console_and_the_case_routes_refuse_a_request_without_an_identity(
    stack: dict[str, Any], tiny_bundle: Path
):
    """Deployed, API Gateway's IAM authoriser lets no unsigned request through; the function also
    refuses one that arrives with no identity, rather than recording no one as the analyst."""
    from infra.http_event import http_api_event
    from infra.invoke import LocalContext, load_handler

    saved = dict(os.environ)
    try:
        handler = load_handler(
            stack["outputs"],
            bundle_dir=tiny_bundle,
            endpoint_url=stack["endpoint"],
            function="ScoringApiFunction",
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    for method, path in [("GET", "/console"), ("GET", "/v1/cases"), ("POST", "/v1/cases/tx-1/close")]:
        body = b'{"verdict": "fraud", "reason": "x"}' if method == "POST" else b""
        event = http_api_event(method, path, headers={"content-type": "application/json"}, body=body)
        response = handler(event, LocalContext(function_name="ScoringApiFunction"))
        assert response["statusCode"] == 401, (path, response)


def test_chromium_is_debians(stack: dict[str, Any]):
    """The browser is the distribution's package, not one a library downloaded."""
    assert shutil.which("chromium") == CHROMIUM
    version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, check=True, timeout=30)
    assert version.stdout.startswith("Chromium")


def printed(capsys: Any) -> str:
    """What the command printed, without the EMF lines the handlers behind the runners print meanwhile."""
    return "\n".join(line for line in capsys.readouterr().out.splitlines() if not line.startswith("{"))


def test_the_command_line_lists_shows_assigns_and_closes_a_case(stack: dict[str, Any], capsys: Any):
    from infra.cli import main

    outputs, state = stack["outputs"], ["--outputs", str(stack["state"])]
    run = uuid.uuid4().hex[:6]
    merchant = f"merch-cli-{run}"
    case_id = put_payments(outputs, f"user-cli-{run}", merchant)
    cases = DynamoCaseStore(outputs["CasesTableName"])
    _wait("the case", lambda: cases.get(case_id))

    assert main(["cases", "list", "--merchant", merchant, *state]) == 0
    listed = printed(capsys)
    assert case_id in listed
    assert listed.splitlines()[0].split()[:3] == ["opened", "case", "decision"]
    assert main(["cases", "assign", case_id, "ana", "--who", "lead", *state]) == 0
    assert (
        main(["cases", "close", case_id, "--verdict", "fraud", "--reason", "stolen", "--block", *state]) == 0
    )
    assert (
        main(["cases", "close", case_id, "--verdict", "genuine", "--reason", "oops", "--block", *state]) == 2
    )
    assert "block: only a fraud verdict blocks the user" in capsys.readouterr().err
    assert main(["cases", "show", "tx-never-seen", *state]) == 2
    assert "no case 'tx-never-seen'" in capsys.readouterr().err
    assert main(["cases", "show", case_id, *state]) == 0
    shown = printed(capsys)
    assert "CLOSED (fraud), assigned to ana" in shown
    assert "lead  assigned: ana" in shown
    blocked = client("dynamodb", stack["endpoint"]).get_item(
        TableName=outputs["ListsTableName"],
        Key={"list_name": {"S": "blocked_users"}, "value": {"S": f"user-cli-{run}"}},
    )
    assert blocked["Item"]["reason"]["S"] == f"case {case_id}: stolen"
    assert main(["cases", "close", case_id, "--verdict", "genuine", "--reason", "oops", *state]) == 0
    assert f"user-cli-{run} is off blocked_users: this case's fraud verdict had put them there" in printed(
        capsys
    )
    lifted = client("dynamodb", stack["endpoint"]).get_item(
        TableName=outputs["ListsTableName"],
        Key={"list_name": {"S": "blocked_users"}, "value": {"S": f"user-cli-{run}"}},
    )
    assert "Item" not in lifted
    assert main(["cases", "list", "--status", "closed", "--merchant", merchant, *state]) == 0
    assert case_id in printed(capsys)
