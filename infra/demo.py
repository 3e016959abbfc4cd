"""`fraudwatch demo`: the main job on the embedded stack, with a report.

The whole story in one command: train if there is no bundle, start the emulator, deploy, seed the
users' and merchants' profiles with the population's history (and the fraud labels known by its end),
run the handler behind the runner, produce live transactions, wait for every decision, put each
transaction's label on the stream and wait until its merchant's profile counts it, and report
decisions, alerts, precision/recall against the generator's truth, latency, throughput and the labels
counted. Then, run from a terminal (or with `--console`), the stack stays up with the analysts' console:
the FLAGGED payments' review cases are open, their labels left to the analysts' verdicts (docs/cases.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.adapters.dynamodb import DynamoProfileStore
from fraudwatch.domain.features import DAY
from fraudwatch.domain.profile import day_row
from fraudwatch.errors import FraudwatchError
from infra.alerts import DEFAULT_LOG, Watch, open_watch, watch
from infra.demo_report import (
    DemoReport,
    build_report,
    count_items,
    queue_depth,
    read_arrivals,
    read_decisions,
)
from infra.deploy import deploy
from infra.embedded import (
    BUNDLE_DIR,
    DEFAULT_STACK,
    HANDLER_LOG,
    HandlerFactory,
    RunningHandler,
    StackError,
    ensure_bundle,
    guarded,
    handler_output,
    real_handler,
    start_handler,
    use_emulator_credentials,
)
from infra.emulator import Emulator, client
from infra.events import label_of
from infra.producer import live_transactions as producer_live
from infra.producer import produce
from infra.seeding import warm_profiles
from training.pipeline import DEFAULT_SEED

if TYPE_CHECKING:
    from infra.emulator import Emulator


DEFAULT_TRANSACTIONS = 10_000
DEFAULT_RATE = 250.0
"""Transactions per second: a steady stream (40 s by default), so the latency measured is a record's own,
not the wait of a burst larger than the runner drains at once (`--rate 0` sends one)."""
DEFAULT_ALERTS_LOG = Path(DEFAULT_LOG)


def live_transactions(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` live transactions, labelled, shifted to end now (the producer's own live source)."""
    return list(producer_live(count, seed or DEFAULT_SEED))


def wait_for_decisions(
    endpoint_url: str,
    outputs: Mapping[str, str],
    transaction_ids: Sequence[str],
    running: RunningHandler,
    timeout_s: float,
    handler_log: Path = HANDLER_LOG,
) -> None:
    """Block until every transaction has a decision; fail clearly on a timeout or a dead runner."""
    from tqdm import tqdm

    dynamodb, sqs = client("dynamodb", endpoint_url), client("sqs", endpoint_url)
    expected = len(transaction_ids)
    deadline = time.monotonic() + timeout_s
    with tqdm(total=expected, desc="decisions", unit="tx", file=sys.stderr) as bar:
        while True:
            running.check()
            # The runner's own count is free; the table is scanned (which loads the emulator) only
            # once the runner has delivered everything, or when the deadline calls for the truth.
            delivered = running.runner.stats.records_delivered
            bar.update(min(delivered, expected) - bar.n)
            if delivered < expected and time.monotonic() <= deadline:
                time.sleep(0.2)
                continue
            decided = count_items(dynamodb, outputs["DecisionsTableName"])
            if decided >= expected:
                bar.update(expected - bar.n)
                return
            quarantined = queue_depth(sqs, outputs["QuarantineQueueUrl"])
            if quarantined and decided + quarantined >= expected:
                raise StackError(
                    f"{quarantined} of {expected} generated transactions were quarantined, e.g. "
                    f"{_peek(sqs, outputs['QuarantineQueueUrl'])}"
                )
            if time.monotonic() > deadline:
                failed = queue_depth(sqs, outputs["OnFailureQueueUrl"])
                decisions = read_decisions(dynamodb, outputs["DecisionsTableName"])
                missing = [tx for tx in transaction_ids if tx not in decisions]
                raise StackError(
                    f"{len(missing)} of {expected} transactions have no decision after {timeout_s:.0f} s "
                    f"(e.g. {', '.join(missing[:3])}; quarantined: {quarantined}, on-failure messages: "
                    f"{failed}, runner: {running.runner.stats}; handler log: {handler_log})"
                )
            time.sleep(0.5)


def _peek(sqs: Any, queue_url: str) -> str:
    """One message of a queue, shortened, left on the queue."""
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, VisibilityTimeout=0)
    body = messages.get("Messages", [{"Body": "(none readable)"}])[0]["Body"]
    return str(body)[:300]


@dataclass(frozen=True)
class HandlerSetup:
    """Which handler the demo runs, with which bundle, logging where."""

    factory: HandlerFactory
    bundle_dir: Path
    log: Path


class Steps:
    """The demo's current step, so a failure names where it happened."""

    def __init__(self) -> None:
        self.current = "start"

    def __call__(self, name: str) -> None:
        self.current = name


# What a failed step raises for reasons outside our code: a clear one-line message, not a traceback.
# StackError, DeployError and EmulatorError are FraudwatchErrors.
def _step_errors() -> tuple[type[BaseException], ...]:

    return (FraudwatchError, ClientError, BotoCoreError, OSError, ValueError)


@contextlib.contextmanager
def preserved_environment() -> Iterator[None]:
    """Restore os.environ afterwards: the demo points it at an emulator that is gone once it returns."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_demo(
    *,
    transactions: int,
    rate: float | None,
    seed: int,
    timeout_s: float,
    stack_name: str = DEFAULT_STACK,
    bundle_dir: Path = BUNDLE_DIR,
    handler_log: Path = HANDLER_LOG,
    handler_factory: HandlerFactory = real_handler,
    labels: bool = True,
    alerts_log: Path = DEFAULT_ALERTS_LOG,
    review: Review | None = None,
) -> DemoReport:
    """The main job: train if needed → emulator → deploy → runner + handler → produce → decisions →
    the transactions' labels → report.

    `handler_factory` swaps the handler (a benchmark runs another one on the same stack, without
    `labels`). `review`, when given, is handed the report with the stack still running (handlers and
    runners included), and the FLAGGED transactions' labels are left to it: their review cases stay
    open for analysts, whose verdicts are the merchants' labels (`serve_console`).
    """
    step = Steps()
    try:
        step("model bundle")
        ensure_bundle(bundle_dir)
        step("generate")
        truth = live_transactions(transactions, seed)
        step("start the emulator")
        with preserved_environment(), Emulator() as emulator:
            step("deploy")
            outputs = deploy(emulator.endpoint_url, stack_name=stack_name, progress=True)
            handler = HandlerSetup(handler_factory, bundle_dir, handler_log)
            return _run_on_stack(
                emulator, outputs, truth, rate, timeout_s, handler, step, seed, labels, alerts_log, review
            )
    except _step_errors() as exc:
        raise StackError(f"{step.current}: {exc}") from exc


def _run_on_stack(
    emulator: Emulator,
    outputs: Mapping[str, str],
    truth: Sequence[Mapping[str, Any]],
    rate: float | None,
    timeout_s: float,
    handler: HandlerSetup,
    step: Steps,
    seed: int,
    labels: bool,
    alerts_log: Path,
    review: Review | None = None,
) -> DemoReport:
    endpoint = emulator.endpoint_url
    use_emulator_credentials(endpoint)
    step("subscribe to alerts")
    sqs = client("sqs", endpoint)
    alerts = Watch(sqs, open_watch(client("sns", endpoint), sqs, outputs["AlertsTopicArn"]))
    step("warm the user and merchant profiles with the population's history")
    tables = (outputs["ProfilesTableName"], outputs["MerchantProfilesTableName"])
    seeded = warm_profiles(endpoint, tables, truth, seed)
    hidden = ("is_fraud", "fraud_pattern")  # the truth stays with the demo, never on the stream
    records = [{k: v for k, v in tx.items() if k not in hidden} for tx in truth]
    kinesis = client("kinesis", endpoint)
    with handler_output(handler.log):
        step("start the handler and the runner")
        running = start_handler(outputs, endpoint, handler.bundle_dir, handler.factory)
        try:
            step("produce")
            produced = produce(kinesis, outputs["StreamName"], records, rate=rate, total=len(records))
            step("wait for decisions")
            ids = [str(tx["transaction_id"]) for tx in records]
            wait_for_decisions(endpoint, outputs, ids, running, timeout_s, handler.log)
            timings = running.runner.timings  # the transactions', before any label is put
            fed: LabelsFed | None = None
            if labels:
                step("label the transactions on the stream (chargebacks and genuine), count them by merchant")
                reviewed = _flagged(endpoint, outputs) if review else set()
                unreviewed = [tx for tx in truth if tx["transaction_id"] not in reviewed]
                fed = feed_labels(endpoint, outputs, unreviewed, running, timeout_s)
            stats = asdict(running.runner.stats)
        finally:
            if review is None:
                running.close()
    step(f"follow the alerts into {alerts_log}")
    alerted = watch(alerts, alerts_log, follow=False, stop=threading.Event(), say=lambda line: None)
    step("report")
    report = build_report(
        truth,
        read_decisions(client("dynamodb", endpoint), outputs["DecisionsTableName"]),
        read_arrivals(kinesis, outputs["StreamName"]),
        alerted,
        quarantined=queue_depth(sqs, outputs["QuarantineQueueUrl"]),
        on_failure=queue_depth(sqs, outputs["OnFailureQueueUrl"]),
        produce_seconds=(produced.finished or time.time()) - produced.started,
        runner=stats,
        seeded=seeded,
        timings=timings,
    )
    report.rate, report.alerts_log = rate, str(alerts_log)
    if fed is not None:
        report.labels = fed._asdict()
    step("score a few payments through the inline API")
    with handler.log.open("a") as sink, contextlib.redirect_stdout(sink):
        report.api = score_through_api(endpoint, outputs, handler.bundle_dir, truth, seed)
    if review is not None:
        try:
            with handler_output(handler.log):  # the handlers behind the runners keep printing EMF
                review(endpoint, outputs, report)
        finally:
            running.close()
    return report


Review = Callable[[str, Mapping[str, str], "DemoReport"], None]
"""What runs once the demo has reported, with its stack up: `serve_console` (until Ctrl-C)."""


def _flagged(endpoint_url: str, outputs: Mapping[str, str]) -> set[str]:
    """The FLAGGED transactions: their review cases are opened for analysts to give their verdicts."""
    decisions = read_decisions(client("dynamodb", endpoint_url), outputs["DecisionsTableName"])
    return {tx for tx, decision in decisions.items() if decision["decision"] == "FLAGGED"}


def serve_console(port: int, bundle_dir: Path = BUNDLE_DIR) -> Review:
    """Print the report and the console's address, then serve the console (and the API) until Ctrl-C."""

    def review(endpoint_url: str, outputs: Mapping[str, str], report: DemoReport) -> None:
        from infra.serve import CONSOLE_PATH, Containers, make_server

        out = sys.__stdout__ or sys.stderr
        containers = Containers.load(outputs, endpoint_url, bundle_dir, count=2)
        try:
            server = make_server(containers, port, log=False)
        except OSError:  # the port is taken: any free one
            server = make_server(containers, 0, log=False)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        print(report.text(), file=out)
        print(
            "\nreview cases: the FLAGGED payments wait for analysts (their labels were left to them) in "
            f"the console at {url}{CONSOLE_PATH}\nA verdict counts in its merchant's risk from the next "
            "midnight. Ctrl-C stops everything.",
            file=out,
            flush=True,
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

    return review


API_PAYMENTS = 4


def score_through_api(
    endpoint_url: str,
    outputs: Mapping[str, str],
    bundle_dir: Path,
    truth: Sequence[Mapping[str, Any]],
    seed: int,
    count: int = API_PAYMENTS,
) -> list[dict[str, Any]]:
    """A few new payments of the run's users, each posted twice to POST /v1/transactions through
    `fraudwatch serve`'s server and the real API handler: the decision, its score, whether the second
    answer was the same, and how long the first took. Every other one is 30 times its user's amount."""
    import urllib.request

    from infra.serve import Containers, serving

    def post(url: str, body: bytes) -> tuple[dict[str, Any], float]:
        request = urllib.request.Request(  # noqa: S310 - the local server's own http URL
            f"{url}/v1/transactions", body, {"content-type": "application/json"}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - as above
            answer: dict[str, Any] = json.loads(response.read())
        return answer, (time.perf_counter() - started) * 1000

    by_user = {str(tx["user_id"]): tx for tx in truth}
    containers = Containers.load(outputs, endpoint_url, bundle_dir, 1, {"POWERTOOLS_LOG_LEVEL": "WARNING"})
    scored = []
    with serving(containers, log=False) as url:
        for i, tx in enumerate(list(by_user.values())[:count]):
            payment = {
                "transaction_id": f"api-{seed}-{i}",
                "user_id": tx["user_id"],
                "merchant_id": tx["merchant_id"],
                "amount": round(float(tx["amount"]) * (30 if i % 2 else 1), 2),
                "currency": tx["currency"],
                "timestamp": datetime.now(UTC).isoformat(),
                "category": tx["category"],
            }
            body = json.dumps(payment).encode()
            first, took_ms = post(url, body)
            again, _ = post(url, body)
            scored.append(
                {
                    "transaction_id": payment["transaction_id"],
                    "amount": payment["amount"],
                    "decision": first["decision"],
                    "score": first["score"],
                    "same_again": first == again,
                    "ms": took_ms,
                }
            )
    return scored


class LabelsFed(NamedTuple):
    """What the demo labelled once its transactions were decided."""

    put: int
    fraud: int
    counted: int
    merchants: int


def feed_labels(
    endpoint_url: str,
    outputs: Mapping[str, str],
    truth: Sequence[Mapping[str, Any]],
    running: RunningHandler,
    timeout_s: float,
) -> LabelsFed:
    """Put each decided transaction's label (its truth: a chargeback or a confirmed genuine payment),
    known now, on the stream, and wait until every one is counted.

    Counted: the rise of the merchants' label counts for today, their profiles read before and after
    (the labels' partition key is the merchant id, so the handler's single writer counts them).
    """
    now = datetime.now(UTC).replace(microsecond=0)
    fed = [label_of(tx, now.isoformat()) for tx in truth]
    merchants = sorted({str(label["merchant_id"]) for label in fed})
    store = DynamoProfileStore(
        outputs["ProfilesTableName"], outputs["MerchantProfilesTableName"], client("dynamodb", endpoint_url)
    )
    day = int(now.timestamp() // DAY)

    def labels_today() -> int:
        held = store.get_many((), merchants).merchants
        return int(
            sum(row[1] for profile in held.values() if (row := day_row(profile.days, day)) is not None)
        )

    before = labels_today()
    delivered = running.runner.stats.records_delivered + len(fed)
    produce(client("kinesis", endpoint_url), outputs["StreamName"], fed, total=len(fed))
    deadline = time.monotonic() + timeout_s
    counted = 0
    while time.monotonic() <= deadline:
        running.check()
        # The runner's count is free; the profiles are read once it has delivered every label.
        if running.runner.stats.records_delivered >= delivered:
            counted = labels_today() - before
            if counted >= len(fed):
                break
        time.sleep(0.2)
    else:
        raise StackError(f"only {counted} of {len(fed)} labels counted in {timeout_s:.0f} s")
    return LabelsFed(len(fed), sum(label["is_fraud"] for label in fed), counted, len(merchants))


def demo(args: argparse.Namespace) -> int:
    """`fraudwatch demo`."""
    started = time.perf_counter()
    args.console = keeps_console(args.console)
    report = run_demo(
        transactions=args.transactions,
        rate=args.rate or None,
        seed=args.seed,
        timeout_s=args.timeout,
        stack_name=args.stack_name,
        bundle_dir=args.bundle,
        labels=args.labels,
        alerts_log=Path(args.alerts_log),
        review=serve_console(args.console_port, args.bundle) if args.console else None,
    )
    if not args.console:
        print(report.text())
    if args.report_json:
        Path(args.report_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report_json).write_text(json.dumps(report.to_dict(), indent=2))
    print(f"done in {time.perf_counter() - started:.1f} s; everything stopped")
    return 0


def keeps_console(flag: bool | None, stdin: TextIO | None = None) -> bool:
    """Whether the demo keeps its console up: as `--console`/`--no-console` say, else only when run from
    a terminal, where someone can open it and press Ctrl-C (a script or CI would wait for ever)."""
    if flag is not None:
        return flag
    interactive = (stdin or sys.stdin).isatty()
    if not interactive:
        print("the console will not be kept up: not run from a terminal (--console keeps it up)")
    return interactive


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `demo`."""
    from infra.cli import at_least, number_from, port_number, writable_file

    parser = subparsers.add_parser(
        "demo",
        help="the main job: train if needed, run the whole stack, produce, report",
        description="Train if there is no model bundle, start the embedded emulator, deploy template.yaml, "
        "run the real handler behind the local event-source runner, produce live transactions, wait "
        "for every decision, label the transactions on the stream (chargebacks and genuine, counted in "
        "their merchants' profiles) and report decisions, alerts, precision/recall, latency and throughput.",
    )
    parser.add_argument(
        "--transactions",
        type=at_least(1),
        default=DEFAULT_TRANSACTIONS,
        help=f"live transactions to produce (default {DEFAULT_TRANSACTIONS}: enough fraud of each pattern to "
        "read its recall)",
    )
    parser.add_argument(
        "--rate",
        type=number_from(0),
        default=DEFAULT_RATE,
        help=f"transactions per second (default {DEFAULT_RATE:.0f}; 0: as fast as possible, a burst)",
    )
    parser.add_argument(
        "--alerts-log",
        type=writable_file,
        default=str(DEFAULT_ALERTS_LOG),
        help=f"where the alerts are appended, one JSON line each (default {DEFAULT_ALERTS_LOG})",
    )
    parser.add_argument(
        "--seed", type=at_least(0), default=0, help="generator seed (default: the training seed)"
    )
    parser.add_argument(
        "--timeout",
        type=number_from(0, above=True),
        default=300.0,
        help="seconds to wait for every decision (default 300)",
    )
    parser.add_argument("--stack-name", default=DEFAULT_STACK, help=f"stack name (default {DEFAULT_STACK})")
    parser.add_argument(
        "--bundle", type=Path, default=BUNDLE_DIR, help="model bundle directory (trained there when missing)"
    )
    parser.add_argument(
        "--no-labels",
        dest="labels",
        action="store_false",
        help="do not put the transactions' labels (chargebacks and genuine) on the stream once decided",
    )
    parser.add_argument(
        "--report-json", type=writable_file, help="also write the report as JSON to this file"
    )
    parser.add_argument(
        "--console",
        action=argparse.BooleanOptionalAction,
        help="after the report, keep the stack up with the analysts' console on 127.0.0.1 (the FLAGGED "
        "payments' review cases open, their labels left to the analysts) until Ctrl-C; --no-console stops "
        "after the report (default: the console when run from a terminal, so a script or CI never waits)",
    )
    parser.add_argument(
        "--console-port", type=port_number, default=3000, help="the console's port (default 3000)"
    )
    parser.set_defaults(run=guarded(demo))
