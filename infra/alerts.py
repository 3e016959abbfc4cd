"""`fraudwatch alerts`: follow the decisions' alerts on any endpoint, print them and keep a log.

A queue of our own, `<topic>-watch.fifo`, is subscribed to the alerts topic once and kept: alerts
published while no one watches wait there (SQS keeps them four days), so `fraudwatch alerts` shows what
came since the last look and `--follow` goes on. Each alert is printed as one line and appended to the
log as one JSON line, before it is deleted from the queue: a crash between the two shows it again, never
loses it; the alert id (the transaction id) tells a repeat, which is not printed twice in one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.state import add_stack_options

DEFAULT_LOG = "alerts.log"
LOGGED_FIELDS = (
    "transaction_id",
    "user_id",
    "merchant_id",
    "amount",
    "currency",
    "transaction_time",
    "decision",
    "score",
    "reasons",
    "model_version",
    "thresholds",
    "decided_at",
)
"""What an alerts.log line keeps: the decision contract's fields, nothing else a producer may have sent."""
WAIT_S = 10  # SQS long polling: at most 20
SEEN_ALERTS = 100_000
"""Alert ids remembered by one run to show each once: far more than a redelivery's distance."""


def watch_queue_name(topic_arn: str) -> str:
    """The watcher's queue for a topic: its name with `-watch`, FIFO like the topic."""
    topic = topic_arn.rsplit(":", 1)[-1].removesuffix(".fifo")
    return f"{topic}-watch"


def open_watch(sns: Any, sqs: Any, topic_arn: str) -> str:
    """The watcher's queue, subscribed to the topic (both idempotent: a second run reuses them); its URL."""
    from infra.messaging import subscribe_queue

    return subscribe_queue(sns, sqs, topic_arn, watch_queue_name(topic_arn))


def log_record(alert: dict[str, Any]) -> dict[str, Any]:
    """One alert as alerts.log keeps it."""
    return {name: alert[name] for name in LOGGED_FIELDS if name in alert}


def alert_line(alert: dict[str, Any]) -> str:
    """One alert for a person to read."""
    reasons = ", ".join(f"{r['feature']} {r['contribution']:+.2f}" for r in alert.get("reasons", []))
    return (
        f"{alert['decided_at'][:19]}  {alert['decision']:<8}  score {alert['score']:.3f}  "
        f"tx {alert['transaction_id']}  user {alert['user_id']}  {alert['amount']:,.2f} {alert['currency']}"
        + (f"  ({reasons})" if reasons else "")
    )


@dataclass
class Watch:
    """Receives alerts from the watcher's queue, once each per run."""

    sqs: Any
    queue_url: str
    seen: dict[str, None] = field(default_factory=dict)
    """The alert ids shown in this run, oldest first, SEEN_ALERTS at most (a long --follow stays bounded)."""

    def receive(self, wait_s: int) -> Iterator[tuple[dict[str, Any], Callable[[], None]]]:
        """The alerts of one long poll, each with the call that deletes it; repeats are deleted at once."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s
        ).get("Messages", [])
        for message in messages:
            receipt = message["ReceiptHandle"]

            def delete(receipt: str = receipt) -> None:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)

            alert = json.loads(message["Body"])
            if alert["transaction_id"] in self.seen:
                delete()
                continue
            self.seen[alert["transaction_id"]] = None
            if len(self.seen) > SEEN_ALERTS:
                del self.seen[next(iter(self.seen))]
            yield alert, delete


def watch(
    watcher: Watch,
    log: Path,
    *,
    follow: bool,
    stop: threading.Event,
    say: Callable[[str], None] = print,
    wait_s: int = WAIT_S,
) -> list[dict[str, Any]]:
    """Print and log alerts until the queue is empty (or, following, until `stop`); the alerts logged."""
    logged: list[dict[str, Any]] = []
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as out:
        while not stop.is_set():
            received = 0
            for alert, delete in watcher.receive(wait_s if follow else 1):
                say(alert_line(alert))
                record = log_record(alert)
                out.write(json.dumps(record) + "\n")
                out.flush()
                delete()
                logged.append(record)
                received += 1
            if not follow and not received:
                break
    return logged


def _alerts_command(args: argparse.Namespace) -> int:
    from fraudwatch.errors import UsageError
    from infra.emulator import client
    from infra.state import require_stack_outputs, stack_endpoint

    outputs = require_stack_outputs(Path(args.outputs))
    log = Path(args.log)
    try:  # before subscribing and receiving: a log it cannot append to is the operator's to fix
        log.parent.mkdir(parents=True, exist_ok=True)
        log.open("a", encoding="utf-8").close()
    except OSError as exc:
        raise UsageError(f"cannot append to {args.log} ({exc.strerror}), check --log") from exc
    topic_arn = args.topic_arn or outputs.get("AlertsTopicArn")
    if not topic_arn:
        raise UsageError(f"{args.outputs} names no AlertsTopicArn: pass --topic-arn")
    endpoint = args.endpoint or stack_endpoint(Path(args.outputs))
    sqs = client("sqs", endpoint, args.region)
    watcher = Watch(sqs, open_watch(client("sns", endpoint, args.region), sqs, topic_arn))
    print(
        f"alerts of {topic_arn.rsplit(':', 1)[-1]} via {watcher.queue_url}; appended to {args.log}"
        + ("; Ctrl-C stops" if args.follow else ""),
        file=sys.stderr,
    )
    stop = threading.Event()
    try:
        logged = watch(watcher, log, follow=args.follow, stop=stop)
    except KeyboardInterrupt:
        return 130
    print(f"{len(logged)} alerts", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `alerts`: print and log the decisions' alerts."""
    parser = subparsers.add_parser(
        "alerts",
        help="print the decisions' alerts and append them to alerts.log (--follow to keep watching)",
        description="Subscribe a queue of fraudwatch's own to the alerts topic (once; it is kept, so alerts "
        "published while no one watches wait for the next look), print each alert as it arrives and append "
        "it to a log, one JSON line per alert with the decision contract's fields. Without --follow, stop "
        "when no alert is waiting. Works on the embedded stack, LocalStack or AWS.",
    )
    add_stack_options(parser)
    parser.add_argument("--follow", "-f", action="store_true", help="keep watching until Ctrl-C")
    parser.add_argument("--log", default=DEFAULT_LOG, help=f"the log to append to (default {DEFAULT_LOG})")
    parser.add_argument("--topic-arn", help="the alerts topic (default: AlertsTopicArn from the outputs)")
    parser.set_defaults(run=_alerts_command)
