"""End to end on the embedded stack: records per second and arrival-to-decision latency, ours vs naive.

Each way runs the demo's pipeline (`infra.demo.run_demo`) on a fresh emulator: moto server, template.yaml
deployed to it, the local event-source runner, the same generated transactions (same count, seed and
rate), wait until every one has a decision, report. Ours is the real handler (functions/scoring/app.py:
one BatchGetItem, BatchWriteItem and PublishBatch per batch, one `inplace_predict` per batch); the
naive one (bench/naive_handler.py) handles each record with its own GetItem, PutItems, Publish and a
one-row DataFrame + `predict_proba`. Latency is ApproximateArrivalTimestamp on the stream -> decided_at
in the decisions table; records/s is transactions over first arrival -> last decision. AWS calls are the
handler's own (counted with botocore's `provide-client-params` event on the sessions the handler builds;
the runner's Kinesis polling is the same for both ways and is not counted).

Run: .venv/bin/python -m bench.e2e   (or `make bench-e2e`; --count, --rate, --seed, --timeout)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._common import REPO_ROOT, machine, table
from infra.cli import at_least

if TYPE_CHECKING:
    from infra.demo_report import DemoReport
    from infra.embedded import Handler, HandlerFactory

LOG_DIR = REPO_ROOT / ".fraudwatch"


class Instruments:
    """The handler's AWS calls by operation, time inside them, and time inside the handler.

    Thread-safe: the runner invokes handlers on its shard threads.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.call_seconds = 0.0
        self.handler_seconds = 0.0
        self._lock = threading.Lock()
        self._started = threading.local()

    def count(self, model: Any, **_: Any) -> None:
        """botocore `provide-client-params`: once per API call a client makes (not per retry)."""
        with self._lock:
            self.calls[model.name] += 1

    def call_starts(self, **_: Any) -> None:
        """botocore `before-call` (the HTTP request and botocore's retries follow)."""
        self._started.at = time.perf_counter()

    def call_ends(self, **_: Any) -> None:
        """botocore `after-call` / `after-call-error`."""
        elapsed = time.perf_counter() - self._started.at
        with self._lock:
            self.call_seconds += elapsed

    def register(self, events: Any) -> None:
        """Hook a session's event system."""
        events.register("provide-client-params.*.*", self.count)
        events.register("before-call.*.*", self.call_starts)
        events.register("after-call.*.*", self.call_ends)
        events.register("after-call-error.*.*", self.call_ends)

    def timed(self, handler: Handler) -> Handler:
        """The handler, its invocations timed."""

        def invoke(event: dict[str, Any], context: Any) -> Any:
            started = time.perf_counter()
            try:
                return handler(event, context)
            finally:
                elapsed = time.perf_counter() - started
                with self._lock:
                    self.handler_seconds += elapsed

        return invoke


@contextlib.contextmanager
def counted_sessions(instruments: Instruments) -> Iterator[None]:
    """Every boto3.Session built meanwhile counts its clients' calls (clients copy the session's hooks)."""
    import boto3

    original = boto3.Session

    class CountingSession(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            instruments.register(self.events)

    boto3.Session = CountingSession  # type: ignore[misc]
    try:
        yield
    finally:
        boto3.Session = original  # type: ignore[misc]


@contextlib.contextmanager
def same_transactions(now: datetime) -> Iterator[None]:
    """The demo's generated transactions, ending at one fixed `now` for every way.

    The generator's output depends on its start time (ids, time-of-day patterns), and the demo starts
    it at the current time: fixed once, both ways see the very same transactions and must reach the
    very same decisions. Records a few minutes old are well inside the contract's 7-day bound.
    """
    from unittest import mock

    import infra.demo
    from infra.producer import live_transactions
    from training.pipeline import DEFAULT_SEED

    def generate(count: int, seed: int) -> list[dict[str, Any]]:
        return list(live_transactions(count, seed or DEFAULT_SEED, now=now))

    with mock.patch.object(infra.demo, "live_transactions", generate):
        yield


def instrumented(factory: HandlerFactory, instruments: Instruments) -> HandlerFactory:
    """A handler factory whose handler's AWS calls are counted and timed, and its invocations timed."""

    def build(outputs: Mapping[str, str], endpoint_url: str, bundle_dir: Path) -> Handler:
        with counted_sessions(instruments):
            return instruments.timed(factory(outputs, endpoint_url, bundle_dir))

    return build


@dataclass(frozen=True)
class Way:
    """One handler to run on the stack."""

    key: str
    name: str
    factory: HandlerFactory


@dataclass
class Result:
    """What one way did on its stack."""

    way: Way
    report: DemoReport
    instruments: Instruments
    wall_seconds: float
    load_before: float
    load_after: float

    @property
    def calls_per_record(self) -> float:
        """The handler's AWS calls per transaction."""
        return self.instruments.calls.total() / self.report.transactions

    @property
    def handler_ms_per_record(self) -> float:
        """Time inside the handler per transaction."""
        return 1000 * self.instruments.handler_seconds / self.report.transactions

    @property
    def aws_ms_per_record(self) -> float:
        """Time inside the handler's AWS calls per transaction (the emulator's answers included)."""
        return 1000 * self.instruments.call_seconds / self.report.transactions


def ways() -> tuple[Way, ...]:
    """Ours (the real handler), then the naive per-record one."""
    from bench.naive_handler import naive_handler
    from infra.embedded import real_handler

    return (
        Way("ours", "ours: real handler (batched)", real_handler),
        Way("naive", "naive: per record, DataFrame + predict_proba", naive_handler),
    )


def run(way: Way, args: argparse.Namespace) -> Result:
    """The demo pipeline on a fresh emulator with this way's handler."""
    from infra.demo import run_demo

    instruments = Instruments()
    load_before = _load()
    started = time.perf_counter()
    report = run_demo(
        transactions=args.count,
        rate=args.rate or None,
        seed=args.seed,
        timeout_s=args.timeout,
        stack_name="fraudwatch-bench",
        handler_log=LOG_DIR / f"bench-e2e-{way.key}.log",
        handler_factory=instrumented(way.factory, instruments),
        labels=False,  # transactions only: the naive handler knows no labels
    )
    return Result(way, report, instruments, time.perf_counter() - started, load_before, _load())


def _load() -> float:
    return os.getloadavg()[0]


# ---------------------------------------------------------------------------------------------- output


def summary(results: Sequence[Result]) -> str:
    """The side-by-side table, then the ratios."""
    rows = []
    for r in results:
        lat = r.report.latency_ms
        rows.append(
            (
                r.way.name,
                r.report.throughput,
                lat["p50"],
                lat["p95"],
                lat["p99"],
                lat["max"],
                f"{r.calls_per_record:.3f}",
                r.handler_ms_per_record,
                r.aws_ms_per_record,
                r.report.end_to_end_seconds,
                f"{r.load_before:.1f} -> {r.load_after:.1f}",
            )
        )
    headers = (
        "way",
        "records/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "AWS calls/rec",
        "handler ms/rec",
        "in AWS calls ms/rec",
        "arrival->last decision s",
        "load (1 min)",
    )
    lines = [table(headers, rows)]
    if len(results) == 2:
        ours, naive = results
        lines.append(
            f"\nratio ours/naive: records/s {_ratio(ours.report.throughput, naive.report.throughput)}; "
            f"naive/ours: p50 {_ratio(naive.report.latency_ms['p50'], ours.report.latency_ms['p50'])}, "
            f"p95 {_ratio(naive.report.latency_ms['p95'], ours.report.latency_ms['p95'])}, "
            f"p99 {_ratio(naive.report.latency_ms['p99'], ours.report.latency_ms['p99'])}, "
            f"AWS calls {_ratio(naive.calls_per_record, ours.calls_per_record)}"
        )
    return "\n".join(lines)


def outcomes(results: Sequence[Result]) -> str:
    """Decisions, alerts and quality per way: both must decide the same (same model, same features)."""
    rows = []
    for r in results:
        rep = r.report
        rows.append(
            (
                r.way.key,
                rep.transactions,
                ", ".join(f"{k} {v}" for k, v in sorted(rep.decisions.items())),
                ", ".join(f"{k} {v}" for k, v in sorted(rep.alerts.items())) or "none",
                rep.precision,
                rep.recall,
                rep.quarantined,
                rep.on_failure,
                rep.runner["invocations"],
            )
        )
    headers = (
        "way",
        "tx",
        "decisions",
        "alerts (SQS)",
        "precision",
        "recall",
        "quarantined",
        "on-failure",
        "invocations",
    )
    verdicts = {tuple(sorted(r.report.decisions.items())) for r in results}
    agree = "the same" if len(verdicts) == 1 else "DIFFERENT: a handler decides wrongly"
    return f"{table(headers, rows)}\ndecisions by kind: {agree}"


def calls_by_operation(results: Sequence[Result]) -> str:
    """The handler's AWS calls per 100 records (the budget's unit), by operation."""
    operations = sorted({op for r in results for op in r.instruments.calls})
    rows = [
        (op, *(100 * r.instruments.calls[op] / r.report.transactions for r in results)) for op in operations
    ]
    rows.append(("total", *(100 * r.calls_per_record for r in results)))
    return table(("calls per 100 records", *(r.way.key for r in results)), rows)


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:,.1f}x" if denominator else "n/a"


# ---------------------------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.e2e",
        description="End to end on the embedded stack (moto server, template, local runner): records/s and "
        "arrival-to-decision latency of the real handler and of a naive per-record handler, side by side.",
    )
    parser.add_argument("--count", type=at_least(1), default=2000, help="transactions per way (default 2000)")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="transactions per second put on the stream (default 0: a burst)",
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: the training seed)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds to wait for every decision, per way (default 900)",
    )
    parser.add_argument(
        "--only", choices=("ours", "naive"), help="run one way only (default: both, ours first)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run both ways, one after the other, and print the tables."""
    import logging

    from fraudwatch.errors import FraudwatchError

    args = _parser().parse_args(argv)
    if args.rate < 0:
        print("bench.e2e: --rate must be 0 (a burst) or positive", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    chosen = [w for w in ways() if args.only in (None, w.key)]
    rate = f"{args.rate:g}/s" if args.rate else "a burst (as fast as the producer puts them)"
    print("End to end on the embedded stack: moto server + template.yaml + local runner + handler")
    print(f"machine: {machine()}")
    print(f"records: {args.count} generated transactions per way (seed {args.seed or 'default'}), {rate}\n")
    results = []
    with same_transactions(datetime.now(UTC).replace(microsecond=0)):
        for way in chosen:
            print(f"== {way.name}", file=sys.stderr)
            try:
                results.append(run(way, args))
            except FraudwatchError as exc:
                print(f"bench.e2e: {way.key}: {exc}", file=sys.stderr)
                return 1
            print(f"{way.key}: done in {results[-1].wall_seconds:.0f} s", file=sys.stderr)
    print(summary(results))
    print()
    print(outcomes(results))
    print()
    print(calls_by_operation(results))
    print(f"\nload average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
