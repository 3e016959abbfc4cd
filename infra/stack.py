"""The embedded stack, and the main job on it.

`fraudwatch stack up` starts the emulator, deploys template.yaml to it and (with a model bundle) runs
the real handler behind the local event-source runner, so the AWS CLI can put records and read
decisions through `AWS_ENDPOINT_URL`; `--detach` keeps it in the background until `stack down`.

`fraudwatch demo` is the whole story in one command: train if there is no bundle, start the emulator,
deploy, seed the users' and merchants' profiles with the population's history (and the fraud labels
known by its end), run the handler behind the runner, produce live transactions, wait for every
decision, put each transaction's label on the stream and wait until its merchant's profile counts it,
and report decisions, alerts, precision/recall against the generator's truth, latency, throughput and
the labels counted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from fraudwatch.errors import FraudwatchError
from infra.template import REPO_ROOT

if TYPE_CHECKING:
    import numpy as np

    from fraudwatch.domain.label import Label
    from fraudwatch.domain.merchant import MerchantProfile
    from fraudwatch.domain.transaction import Transaction
    from infra.emulator import Emulator

Handler = Callable[[dict[str, Any], Any], Any]
# Builds the handler the runner invokes, from the stack's outputs, the endpoint and the model bundle.
HandlerFactory = Callable[[Mapping[str, str], str, Path], Handler]

STATE_DIR = REPO_ROOT / ".fraudwatch"
STATE_FILE = STATE_DIR / "stack.json"
LOG_FILE = STATE_DIR / "stack.log"
HANDLER_LOG = STATE_DIR / "handler.log"
BUNDLE_DIR = REPO_ROOT / "layers" / "model" / "bundle"
BUNDLE_MODEL = "model.ubj"
DEFAULT_STACK = "fraudwatch"
DETACH_TIMEOUT_S = 120.0


class StackError(FraudwatchError):
    """A step of the stack or the demo failed; the message names the step and the reason."""


# ---------------------------------------------------------------------------------------------- pieces


def ensure_bundle(bundle_dir: Path = BUNDLE_DIR) -> None:
    """Train (`fraudwatch train`) when there is no model bundle, or one for other features; load it.

    Loading it here makes a corrupt bundle fail now, before the stack starts.
    """
    from fraudwatch.adapters.model import load_model
    from fraudwatch.errors import StaleBundleError

    if not (bundle_dir / BUNDLE_MODEL).is_file():
        _train(bundle_dir, f"no model bundle in {bundle_dir}")
    try:
        load_model(bundle_dir)
    except StaleBundleError:
        _train(bundle_dir, f"the model bundle in {bundle_dir} is for other features than this code's")
        load_model(bundle_dir)


def _train(bundle_dir: Path, why: str) -> None:
    print(f"{why}: training one first (fraudwatch train)", file=sys.stderr)
    result = subprocess.run(  # noqa: S603 - our own interpreter and command
        [sys.executable, "-m", "infra.cli", "train", "--bundle", str(bundle_dir)], cwd=REPO_ROOT, check=False
    )
    if result.returncode != 0 or not (bundle_dir / BUNDLE_MODEL).is_file():
        raise StackError(f"training failed (exit {result.returncode}); run `fraudwatch train` to see why")


def use_emulator_credentials(endpoint_url: str) -> None:
    """Point this process's AWS SDK at the emulator: it talks to nothing else from here on."""
    from infra.emulator import emulator_environment

    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.update(emulator_environment(endpoint_url))


@dataclass
class RunningHandler:
    """The real handler behind the local event-source runner, on a thread."""

    runner: Any
    stop: threading.Event
    thread: threading.Thread
    error: list[BaseException] = field(default_factory=list)

    def check(self) -> None:
        """Raise if the runner died."""
        if self.error:
            raise StackError(f"the event-source runner stopped: {self.error[0]}") from self.error[0]

    def close(self) -> None:
        """Finish the batch in flight and stop."""
        self.stop.set()
        self.thread.join(timeout=60)


def real_handler(outputs: Mapping[str, str], endpoint_url: str, bundle_dir: Path) -> Handler:
    """The scoring function's handler, imported in this process with its environment (a cold start)."""
    from infra.invoke import load_handler

    return load_handler(
        outputs,
        bundle_dir=bundle_dir,
        endpoint_url=endpoint_url,
        # The demo's output is its report: the handler's logs and EMF metrics go to the handler log.
        overrides={"POWERTOOLS_LOG_LEVEL": "WARNING"},
    )


def start_handler(
    outputs: Mapping[str, str],
    endpoint_url: str,
    bundle_dir: Path = BUNDLE_DIR,
    handler_factory: HandlerFactory = real_handler,
) -> RunningHandler:
    """Run a handler (by default the real one) behind the local event-source runner, on a thread."""
    from infra.emulator import client
    from infra.runner import EventSourceRunner, MappingSettings

    handler = handler_factory(outputs, endpoint_url, bundle_dir)
    runner = EventSourceRunner(
        stream_name=outputs["StreamName"],
        handler=handler,
        settings=MappingSettings.from_template(),
        kinesis=client("kinesis", endpoint_url),
        sqs=client("sqs", endpoint_url),
        on_failure_queue_url=outputs["OnFailureQueueUrl"],
        function_name=outputs.get("ScoringFunctionName", "ScoringFunction"),
    )
    stop = threading.Event()
    running = RunningHandler(runner, stop, threading.Thread())

    def run() -> None:
        try:
            runner.run(stop)
        except BaseException as exc:  # reported by RunningHandler.check on the main thread
            running.error.append(exc)

    running.thread = threading.Thread(target=run, name="event-source-runner", daemon=True)
    running.thread.start()
    if not runner.ready.wait(timeout=30) and not running.error:
        raise StackError("the event-source runner did not open the stream's shards within 30 s")
    running.check()
    return running


@contextlib.contextmanager
def handler_output(path: Path = HANDLER_LOG) -> Iterator[None]:
    """Send stdout (the handler's structured logs and EMF metrics) to a file while the stack runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as sink, contextlib.redirect_stdout(sink):
        yield


def print_endpoint(endpoint_url: str, outputs: Mapping[str, str]) -> None:
    """The endpoint, the environment to point the AWS CLI at it, and the stack's outputs."""
    from infra.emulator import emulator_environment

    env = " ".join(f"{k}={v}" for k, v in emulator_environment(endpoint_url).items() if k != "AWS_REGION")
    print(f"endpoint: {endpoint_url}")
    print(f"export {env}")
    for key, value in outputs.items():
        print(f"  {key:22} {value}")


# ---------------------------------------------------------------------------------------------- stack


def write_state(
    endpoint_url: str, stack_name: str, outputs: Mapping[str, str], path: Path = STATE_FILE
) -> None:
    """Record the running stack for `stack status`, `stack down`, `fraudwatch invoke`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"pid": os.getpid(), "endpoint": endpoint_url, "stack_name": stack_name, "outputs": dict(outputs)}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2))
    temporary.replace(path)


def read_state(path: Path = STATE_FILE) -> dict[str, Any] | None:
    """The recorded stack, or None when none is recorded."""
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return state


def _ours(pid: int) -> bool:
    """True when the pid is alive and is a fraudwatch stack process (never signal anything else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid we recorded
    return b"stack" in cmdline and (b"fraudwatch" in cmdline or b"infra" in cmdline)


def stack_up(args: argparse.Namespace) -> int:
    """`stack up`: emulator + deploy (+ runner with the real handler), until Ctrl-C or `stack down`."""
    if args.detach:
        return _detach(args)
    from infra.deploy import deploy
    from infra.emulator import Emulator

    state = read_state()
    if state and _ours(int(state["pid"])):
        raise StackError(
            f"a stack already runs (pid {state['pid']}, {state['endpoint']}); `stack down` first"
        )
    stop = threading.Event()
    # `stack down` (SIGTERM) ends the wait below, and the cleanup runs in order.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Emulator(in_process=True, port=args.port) as emulator:
        outputs = deploy(emulator.endpoint_url, stack_name=args.stack_name, progress=True)
        use_emulator_credentials(emulator.endpoint_url)
        running = None
        if args.runner and (args.bundle / BUNDLE_MODEL).is_file():
            running = start_handler(outputs, emulator.endpoint_url, args.bundle)
        elif args.runner:
            print(
                "no model bundle (run `fraudwatch train`): the stack runs without the handler",
                file=sys.stderr,
            )
        write_state(emulator.endpoint_url, args.stack_name, outputs)
        print_endpoint(emulator.endpoint_url, outputs)
        if running:
            print(f"the scoring handler runs behind the local event-source runner (its logs: {HANDLER_LOG})")
        print("ready; Ctrl-C or `fraudwatch stack down` stops it", flush=True)
        # From here Ctrl-C is a request to stop, like SIGTERM (even where a shell ignores SIGINT).
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        try:
            with handler_output() if running else contextlib.nullcontext():
                while not stop.wait(0.5):
                    if running:
                        running.check()
        finally:
            if running:
                running.close()
            with contextlib.suppress(OSError):
                if (read_state() or {}).get("pid") == os.getpid():
                    STATE_FILE.unlink()
    print("stopped")
    return 0


def _detach(args: argparse.Namespace) -> int:
    """Run `stack up` in the background and wait until it has written its state."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "infra.cli", "stack", "up", "--stack-name", args.stack_name]
    command += ["--port", str(args.port), "--bundle", str(args.bundle)]
    command += [] if args.runner else ["--no-runner"]
    with contextlib.suppress(OSError):
        STATE_FILE.unlink()
    with LOG_FILE.open("w") as log_file:
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and command
            command, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + DETACH_TIMEOUT_S
    while time.monotonic() < deadline:
        state = read_state()
        if state and state.get("pid") == child.pid:
            print_endpoint(state["endpoint"], state["outputs"])
            print(
                f"running in the background (pid {child.pid}, log {LOG_FILE}); "
                "`fraudwatch stack down` stops it"
            )
            return 0
        if child.poll() is not None:
            raise StackError(f"the background stack exited ({child.returncode}): {_tail(LOG_FILE)}")
        time.sleep(0.2)
    child.terminate()
    raise StackError(f"the background stack was not ready within {DETACH_TIMEOUT_S:.0f} s: {_tail(LOG_FILE)}")


def _tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text().strip().splitlines()[-lines:])
    return "(no log)"


def stack_status(args: argparse.Namespace) -> int:
    """`stack status`: is the recorded stack up, and where."""
    from infra.emulator import is_healthy

    state = read_state()
    if state is None:
        print("no stack is running (none recorded in .fraudwatch/stack.json)")
        return 1
    alive, healthy = _ours(int(state["pid"])), is_healthy(state["endpoint"])
    if not (alive and healthy):
        print(
            f"the recorded stack is not running (pid {state['pid']} alive: {alive}, "
            f"endpoint answers: {healthy})"
        )
        return 1
    print(f"running: pid {state['pid']}, stack {state['stack_name']}")
    print_endpoint(state["endpoint"], state["outputs"])
    return 0


def stack_down(args: argparse.Namespace) -> int:
    """`stack down`: stop the background stack recorded in the state file."""
    state = read_state()
    if state is None:
        print("no stack is running")
        return 0
    pid = int(state["pid"])
    if _ours(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _ours(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _ours(pid):
            raise StackError(f"pid {pid} did not stop within 20 s after SIGTERM")
    with contextlib.suppress(OSError):
        STATE_FILE.unlink()
    print(f"stopped (pid {pid})")
    return 0


# ---------------------------------------------------------------------------------------------- demo


@dataclass
class DemoReport:
    """What the demo measured."""

    transactions: int
    decisions: dict[str, int]
    alerts: dict[str, int]
    quarantined: int
    on_failure: int
    true_positives: int
    false_positives: int
    false_negatives: int
    recall_by_pattern: dict[str, str]
    # ApproximateArrivalTimestamp on the stream -> decided_at, stamped as the batch is decided, just
    # before its writes: a burst larger than the runner drains at once waits in the stream, and shows.
    latency_ms: dict[str, float]
    produce_seconds: float
    end_to_end_seconds: float
    runner: dict[str, int]
    seeded: dict[str, int]
    """Profiles seeded from the population's history before the run (Seeded's fields)."""
    labels: dict[str, int] = field(default_factory=dict)
    """The run's transactions labelled on the stream once decided (LabelsFed's fields); empty: none."""
    api: list[dict[str, Any]] = field(default_factory=list)
    """Payments posted twice to the inline API after the run (`score_through_api`)."""

    @property
    def precision(self) -> float:
        """FLAGGED + REJECTED that were fraud."""
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else 0.0

    @property
    def recall(self) -> float:
        """Fraud that was FLAGGED or REJECTED."""
        fraud = self.true_positives + self.false_negatives
        return self.true_positives / fraud if fraud else 0.0

    @property
    def throughput(self) -> float:
        """Transactions decided per second, from the first arrival on the stream to the last decision."""
        return self.transactions / self.end_to_end_seconds if self.end_to_end_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data, derived figures included."""
        return asdict(self) | {
            "precision": self.precision,
            "recall": self.recall,
            "throughput_per_s": self.throughput,
        }

    def text(self) -> str:
        """The report a person reads."""
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(self.decisions.items()))
        alerts = ", ".join(f"{k} {v:,}" for k, v in sorted(self.alerts.items())) or "none"
        patterns = (
            ", ".join(f"{k} {v}" for k, v in sorted(self.recall_by_pattern.items())) or "no fraud produced"
        )
        lat = self.latency_ms
        return "\n".join(
            [
                f"transactions     {self.transactions:,} produced in {self.produce_seconds:.1f} s, "
                f"all decided; quarantined {self.quarantined}, on-failure {self.on_failure}",
                f"decisions        {kinds}",
                f"alerts (SQS)     {alerts}",
                f"precision        {self.precision:.3f}  (FLAGGED+REJECTED that were fraud: "
                f"{self.true_positives} of {self.true_positives + self.false_positives})",
                f"recall           {self.recall:.3f}  (fraud FLAGGED or REJECTED: "
                f"{self.true_positives} of {self.true_positives + self.false_negatives}); "
                f"by pattern: {patterns}",
                f"latency          arrival on the stream -> decision: p50 {lat['p50']:.0f} ms, "
                f"p95 {lat['p95']:.0f} ms, p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms",
                f"throughput       {self.throughput:,.0f} transactions/s end to end "
                f"({self.end_to_end_seconds:.1f} s from first arrival to last decision)",
                f"runner           {self.runner['invocations']} invocations, "
                f"{self.runner['retries']} retries, {self.runner['errors']} errors",
                f"seeded           {self.seeded['users']:,} users' profiles and {self.seeded['merchants']:,} "
                f"merchants' from the history (holding {self.seeded['labels']:,} labels known by its end, "
                f"{self.seeded['fraud_labels']:,} fraud)",
                self._labels_line(),
                *self._api_lines(),
            ]
        )

    def _api_lines(self) -> list[str]:
        if not self.api:
            return []
        same = sum(p["same_again"] for p in self.api)
        lines = [
            f"inline API       {len(self.api)} new payments posted twice each to POST /v1/transactions "
            f"(fraudwatch serve, the real handler): the same decision the second time for {same}"
        ]
        lines += [
            f"                 {p['transaction_id']}  {p['amount']:>10,.2f}  {p['decision']:<8} "
            f"score {p['score']:.3f}  first answer in {p['ms']:.0f} ms"
            for p in self.api
        ]
        return lines

    def _labels_line(self) -> str:
        if not self.labels:
            return "labels           none put on the stream (--no-labels)"
        fed = self.labels
        return (
            f"labels           {fed['put']:,} of this run's transactions labelled on the stream, "
            f"{fed['fraud']:,} of them fraud (partition key merchant_id); {fed['counted']:,} counted in "
            f"{fed['merchants']:,} merchants' profiles, whose fraud rates read them from tomorrow"
        )


def live_transactions(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` live transactions, labelled, shifted to end now (the producer's own live source)."""
    from infra.producer import live_transactions as producer_live
    from training.pipeline import DEFAULT_SEED

    return list(producer_live(count, seed or DEFAULT_SEED))


class Seeded(NamedTuple):
    """What the demo seeded from the live population's history."""

    users: int
    merchants: int
    labels: int
    """The labels the merchants' profiles hold: of those known by the history's end, the last days kept."""
    fraud_labels: int


def warm_profiles(
    endpoint_url: str | None, tables: tuple[str, str], truth: Sequence[Mapping[str, Any]], seed: int
) -> Seeded:
    """Seed the profiles with the live population's own history, as production would have them.

    The generator's history of the same population is moved by whole days (local hours kept, UTC days
    kept whole) to end before the first live transaction, folded through the domain's profile update,
    and written. Its merchants get the labels known by the history's end, each DEFAULT_LABEL_DELAY
    after its transaction as in training, moved by the same days; a label due later is not known yet.
    `tables` are the users' and the merchants' profile tables.
    """
    import math

    from fraudwatch.adapters.dynamodb import DynamoProfileStore
    from infra.emulator import client
    from infra.events import instant
    from infra.producer import live_config
    from training.features import replay_profiles, to_transactions
    from training.generate import generate_history
    from training.io import LABEL
    from training.pipeline import DEFAULT_SEED

    frame = generate_history(live_config(len(truth), seed or DEFAULT_SEED))
    history = to_transactions(frame)
    end = max(tx.epoch for tx in history)
    first_live = min(instant(tx) for tx in truth)
    shift = math.floor((first_live - end) / 86400) * 86400
    profiles = replay_profiles(tx._replace(epoch=tx.epoch + shift) for tx in history)
    merchants, _ = merchants_known_by(history, frame[LABEL].to_numpy(dtype=bool), end, shift)
    store = DynamoProfileStore(*tables, client("dynamodb", endpoint_url))
    unwritten = store.put_many(list(profiles.values()))
    unwritten_merchants = store.put_merchants(list(merchants.values()))
    if unwritten or unwritten_merchants:
        raise StackError(
            f"{len(unwritten)} user and {len(unwritten_merchants)} merchant profiles could not be written"
        )
    held = [counts for merchant in merchants.values() for counts in merchant.days.values()]
    return Seeded(len(profiles), len(merchants), sum(c[0] for c in held), sum(c[1] for c in held))


def merchants_known_by(
    history: Sequence[Transaction], is_fraud: np.ndarray, end: float, shift: float
) -> tuple[dict[str, MerchantProfile], list[Label]]:
    """The merchants' profiles from the history's labels known by `end`, moved by `shift` seconds.

    Each label becomes known DEFAULT_LABEL_DELAY after its transaction (training's replay, `labels_of`)
    and is recorded as applied, as the stream's labels are. Returns the profiles and the labels counted.
    """
    import numpy as np

    from fraudwatch.domain.label import DEFAULT_LABEL_DELAY
    from training.features import Replay, labels_of

    epochs = np.array([tx.epoch for tx in history])
    order = np.argsort(epochs, kind="stable")
    in_time = [history[i] for i in order.tolist()]
    labels = labels_of(
        [tx.transaction_id for tx in in_time],
        [tx.merchant_id for tx in in_time],
        epochs[order],
        is_fraud[order].tolist(),
        DEFAULT_LABEL_DELAY,
    )
    known = [label for label in labels if label.epoch <= end]
    replay = Replay()
    for label in known:
        replay.label(label._replace(epoch=label.epoch + shift))
        replay.merchants[label.merchant_id].mark_applied(label.applied_id, None, None)
    return replay.merchants, known


def subscribe_alerts(endpoint_url: str, topic_arn: str, name: str) -> str:
    """An SQS queue subscribed to the alerts topic (raw delivery: each message is one alert)."""
    from infra.emulator import client
    from infra.messaging import subscribe_queue

    return subscribe_queue(client("sns", endpoint_url), client("sqs", endpoint_url), topic_arn, name)


def drain(sqs: Any, queue_url: str) -> list[str]:
    """Every message body waiting on a queue (deleted as read)."""
    bodies: list[str] = []
    empty_polls = 0
    while empty_polls < 2:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        empty_polls = 0 if messages else empty_polls + 1
        bodies += [m["Body"] for m in messages]
        if messages:
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
    return bodies


def count_items(dynamodb: Any, table: str) -> int:
    """Items in a table (a COUNT scan)."""
    total = 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, Select="COUNT"):
        total += page["Count"]
    return total


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Messages waiting on a queue."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


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

    from infra.emulator import client

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


def read_decisions(dynamodb: Any, table: str) -> dict[str, dict[str, str]]:
    """transaction_id -> decision and decided_at, for every item of the decisions table."""
    decisions = {}
    projection = "transaction_id, decision, decided_at"
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ProjectionExpression=projection):
        for item in page["Items"]:
            decisions[item["transaction_id"]["S"]] = {k: v["S"] for k, v in item.items()}
    return decisions


def read_arrivals(kinesis: Any, stream_name: str) -> dict[str, float]:
    """transaction_id -> ApproximateArrivalTimestamp (epoch seconds) of every transaction on the stream,
    reading every shard from the start (labels, which carry their transaction's id, left out)."""
    from fraudwatch.domain.events import EVENT_FIELD, LABEL_EVENT

    arrivals = {}
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in page["Records"]:
                with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                    body = json.loads(record["Data"])
                    if body.get(EVENT_FIELD) != LABEL_EVENT:
                        arrivals[body["transaction_id"]] = record["ApproximateArrivalTimestamp"].timestamp()
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return arrivals


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of a sample (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": ordered[-1]}


def build_report(
    truth: Sequence[Mapping[str, Any]],
    decisions: Mapping[str, Mapping[str, str]],
    arrivals: Mapping[str, float],
    alerts: Sequence[str],
    *,
    quarantined: int,
    on_failure: int,
    produce_seconds: float,
    runner: Mapping[str, int],
    seeded: Seeded,
) -> DemoReport:
    """Compare the decisions with the generator's truth, and time them against the stream's arrivals."""
    from datetime import datetime

    positive = {"FLAGGED", "REJECTED"}
    tp = fp = fn = 0
    caught: Counter[str] = Counter()
    frauds: Counter[str] = Counter()
    for tx in truth:
        flagged = decisions[tx["transaction_id"]]["decision"] in positive
        fraud = bool(tx["is_fraud"])
        tp, fp, fn = tp + (flagged and fraud), fp + (flagged and not fraud), fn + (fraud and not flagged)
        if fraud:
            frauds[str(tx.get("fraud_pattern", "fraud"))] += 1
            caught[str(tx.get("fraud_pattern", "fraud"))] += flagged
    decided_at = {tx: datetime.fromisoformat(d["decided_at"]).timestamp() for tx, d in decisions.items()}
    latencies = [(decided_at[tx] - arrivals[tx]) * 1000 for tx in decided_at if tx in arrivals]
    first_arrival = min(arrivals.values(), default=0.0)
    last_decision = max(decided_at.values(), default=0.0)
    alert_kinds: Counter[str] = Counter()
    for body in alerts:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            alert_kinds[json.loads(body)["decision"]] += 1
    return DemoReport(
        transactions=len(truth),
        decisions=dict(Counter(d["decision"] for d in decisions.values())),
        alerts=dict(alert_kinds),
        quarantined=quarantined,
        on_failure=on_failure,
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        recall_by_pattern={p: f"{caught[p]}/{n}" for p, n in frauds.items()},
        latency_ms=percentiles(latencies),
        produce_seconds=produce_seconds,
        end_to_end_seconds=max(0.0, last_decision - first_arrival),
        runner=dict(runner),
        seeded=seeded._asdict(),
    )


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
    from botocore.exceptions import BotoCoreError, ClientError

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
) -> DemoReport:
    """The main job: train if needed → emulator → deploy → runner + handler → produce → decisions →
    the transactions' labels → report.

    `handler_factory` swaps the handler (a benchmark runs another one on the same stack, without
    `labels`).
    """
    from infra.deploy import deploy
    from infra.emulator import Emulator

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
            return _run_on_stack(emulator, outputs, truth, rate, timeout_s, handler, step, seed, labels)
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
) -> DemoReport:
    from infra.emulator import client
    from infra.producer import produce

    endpoint = emulator.endpoint_url
    use_emulator_credentials(endpoint)
    step("subscribe to alerts")
    alerts_queue = subscribe_alerts(endpoint, outputs["AlertsTopicArn"], "fraudwatch-demo-alerts")
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
            fed: LabelsFed | None = None
            if labels:
                step("label the transactions on the stream (chargebacks and genuine), count them by merchant")
                fed = feed_labels(endpoint, outputs, truth, running, timeout_s)
            stats = asdict(running.runner.stats)
        finally:
            running.close()
    step("report")
    sqs = client("sqs", endpoint)
    report = build_report(
        truth,
        read_decisions(client("dynamodb", endpoint), outputs["DecisionsTableName"]),
        read_arrivals(kinesis, outputs["StreamName"]),
        drain(sqs, alerts_queue),
        quarantined=queue_depth(sqs, outputs["QuarantineQueueUrl"]),
        on_failure=queue_depth(sqs, outputs["OnFailureQueueUrl"]),
        produce_seconds=(produced.finished or time.time()) - produced.started,
        runner=stats,
        seeded=seeded,
    )
    if fed is not None:
        report.labels = fed._asdict()
    step("score a few payments through the inline API")
    with handler.log.open("a") as sink, contextlib.redirect_stdout(sink):
        report.api = score_through_api(endpoint, outputs, handler.bundle_dir, truth, seed)
    return report


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
    from datetime import UTC, datetime

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
    from datetime import UTC, datetime

    from fraudwatch.adapters.dynamodb import DynamoProfileStore
    from fraudwatch.domain.features import DAY
    from infra.emulator import client
    from infra.events import label_of
    from infra.producer import produce

    now = datetime.now(UTC).replace(microsecond=0)
    fed = [label_of(tx, now.isoformat()) for tx in truth]
    merchants = sorted({str(label["merchant_id"]) for label in fed})
    store = DynamoProfileStore(
        outputs["ProfilesTableName"], outputs["MerchantProfilesTableName"], client("dynamodb", endpoint_url)
    )
    day = int(now.timestamp() // DAY)

    def labels_today() -> int:
        held = store.get_many((), merchants).merchants
        return sum(profile.days.get(day, [0, 0])[0] for profile in held.values())

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
    report = run_demo(
        transactions=args.transactions,
        rate=args.rate or None,
        seed=args.seed,
        timeout_s=args.timeout,
        stack_name=args.stack_name,
        bundle_dir=args.bundle,
        labels=args.labels,
    )
    print(report.text())
    if args.report_json:
        Path(args.report_json).write_text(json.dumps(report.to_dict(), indent=2))
    print(f"done in {time.perf_counter() - started:.1f} s; everything stopped")
    return 0


# ---------------------------------------------------------------------------------------------- command


def _guarded(command: Any) -> Any:
    """Run a command; a failed step is one line on stderr and exit status 1, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
        try:
            return int(command(args))
        except FraudwatchError as exc:
            print(f"fraudwatch {args.command}: {exc}", file=sys.stderr)
            return 1

    return run


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `stack` (up/status/down) and `demo`."""
    stack = subparsers.add_parser(
        "stack",
        help="the embedded stack: emulator + deploy + the handler behind the local runner",
        description="Run the embedded stack (moto on 127.0.0.1, template.yaml deployed to it, the real "
        "handler behind the local event-source runner) to poke at with the AWS CLI.",
    )
    actions = stack.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="start it (foreground; --detach for the background)")
    up.add_argument("--detach", action="store_true", help="run in the background; `stack down` stops it")
    up.add_argument("--stack-name", default=DEFAULT_STACK, help=f"stack name (default {DEFAULT_STACK})")
    up.add_argument("--port", type=int, default=0, help="emulator port (default: a free one)")
    up.add_argument(
        "--no-runner", dest="runner", action="store_false", help="deploy only; do not run the handler"
    )
    up.add_argument("--bundle", type=Path, default=BUNDLE_DIR, help="model bundle directory for the handler")
    up.set_defaults(run=_guarded(stack_up))
    status = actions.add_parser("status", help="is the background stack up, and where")
    status.set_defaults(run=_guarded(stack_status))
    down = actions.add_parser("down", help="stop the background stack")
    down.set_defaults(run=_guarded(stack_down))

    parser = subparsers.add_parser(
        "demo",
        help="the main job: train if needed, run the whole stack, produce, report",
        description="Train if there is no model bundle, start the embedded emulator, deploy template.yaml, "
        "run the real handler behind the local event-source runner, produce live transactions, wait "
        "for every decision, label the transactions on the stream (chargebacks and genuine, counted in "
        "their merchants' profiles) and report decisions, alerts, precision/recall, latency and throughput.",
    )
    parser.add_argument(
        "--transactions", type=positive_int, default=3000, help="live transactions to produce (default 3000)"
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="transactions per second (default 0: as fast as possible)"
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: the training seed)")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for every decision (default 300)"
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
    parser.add_argument("--report-json", help="also write the report as JSON to this file")
    parser.set_defaults(run=_guarded(demo))
