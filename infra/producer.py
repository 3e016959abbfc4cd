"""The producer: transactions and labels onto the Kinesis stream, in PutRecords calls, at a chosen rate.

Each transaction record is the transaction contract's fields only, as JSON (labels such as `is_fraud`
never reach the stream with it), with the user id as partition key so a user's transactions stay in
order on one shard. A label (`"event": "label"`, the label contract's fields) is keyed by its merchant
id instead: the merchant's profile then has a single writer, as a user's has.
Calls carry up to 500 records and 5 MB; the records a call reports failed (FailedRecordCount, by
index) are retried alone, with backoff, a bounded number of times, and then the producer raises,
naming how many were lost. A record whose earlier sibling of the same key failed may land before
it: the retry follows immediately, so the disorder stays within one call and one key.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from fraudwatch.domain.activity import ACTIVITY_FIELDS
from fraudwatch.domain.events import ACTIVITY_EVENT, EVENT_FIELD, LABEL_EVENT
from fraudwatch.domain.label import LABEL_FIELDS
from fraudwatch.domain.transaction import FIELDS, MAX_AGE_SECONDS, check_recent
from fraudwatch.errors import FraudwatchError, InvalidRecordError, UsageError
from infra.events import activity_payload, contract_payload, label_of, label_payload
from infra.state import add_stack_options

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
MAX_ATTEMPTS = 8
MAX_BACKOFF_S = 2.0
# A rate is met by calls about this often, so a slow rate is not sent in bursts of 500.
CALLS_PER_SECOND = 10
# Replayed transactions end this long before "now" at the latest and start no earlier than the
# Lambda's age limit allows, with an hour to spare for the time they spend waiting on the stream.
AGE_MARGIN_S = 3600.0
# Live transactions span about this much simulated time, whatever their count (see live_config).
LIVE_SPAN_DAYS = 3.0
DEFAULT_COUNT = 2000


class ProduceError(FraudwatchError):
    """Records could not be put; the message says how many, and `stats` what was put before."""

    def __init__(self, message: str, stats: ProduceStats) -> None:
        super().__init__(message)
        self.stats = stats


@dataclass
class ProduceStats:
    """What a produce run put on the stream."""

    records_put: int = 0
    calls: int = 0
    retried_records: int = 0
    # transaction_id (a label's: of the transaction it labels) -> epoch seconds at which the
    # PutRecords call that accepted it returned
    put_times: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def rate(self) -> float:
        """Records per second over the run."""
        elapsed = (self.finished or time.time()) - self.started
        return self.records_put / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True)
class _Entry:
    transaction_id: str
    request: dict[str, Any]  # a PutRecordsRequestEntry

    @property
    def size(self) -> int:
        return len(self.request["Data"]) + len(self.request["PartitionKey"].encode())


def stream_entry(record: Mapping[str, Any], position: int) -> _Entry:
    """A record as a PutRecords entry, its contract's fields as JSON: a transaction keyed by its user,
    a label (`"event": "label"`) or a day's activity (`"event": "activity"`) by its merchant."""
    fields: tuple[str, ...]
    payload: Callable[[Mapping[str, Any]], bytes]
    if record.get(EVENT_FIELD) == LABEL_EVENT:
        fields, key, payload = LABEL_FIELDS, "merchant_id", label_payload
    elif record.get(EVENT_FIELD) == ACTIVITY_EVENT:
        fields, key, payload = ACTIVITY_FIELDS, "merchant_id", activity_payload
    else:
        fields, key, payload = FIELDS, "user_id", contract_payload
    missing = [name for name in fields if name not in record]
    if missing:
        raise ValueError(f"record {position}: no {missing[0]!r} (the contract needs {', '.join(fields)})")
    # A day's activity has no transaction: it goes by its merchant and day.
    record_id = str(record.get("transaction_id") or f"{record[key]}:{record.get('day')}")
    entry = _Entry(record_id, {"Data": payload(record), "PartitionKey": str(record[key])})
    if entry.size > MAX_RECORD_BYTES:
        raise ValueError(f"record {position}: {entry.size} bytes, over Kinesis's 1 MiB record limit")
    return entry


def produce(
    kinesis: Any,
    stream_name: str,
    records: Iterable[Mapping[str, Any]],
    *,
    rate: float | None = None,
    progress: bool = True,
    stop: threading.Event | None = None,
    total: int | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    backoff_s: float = 0.1,
    unit: str = "tx",
) -> ProduceStats:
    """Put the records (transactions, labels) on the stream, `rate` per second (None: as fast as it goes).

    Stops between calls when `stop` is set; raises ProduceError when records stay failed after
    `max_attempts` attempts or a call fails outright.
    """
    from tqdm import tqdm

    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if total is None and isinstance(records, Sized):
        total = len(records)
    stop = stop or threading.Event()
    per_call = (
        MAX_RECORDS_PER_CALL
        if rate is None
        else max(1, min(MAX_RECORDS_PER_CALL, math.ceil(rate / CALLS_PER_SECOND)))
    )
    stats = ProduceStats()
    sent = 0
    with tqdm(total=total, unit=unit, desc="produce", disable=not progress) as bar:
        for chunk in _chunks(records, per_call):
            if stop.is_set():
                break
            if rate is not None:
                # Pace by the schedule, not by sleeping per call: slow calls do not lower the rate.
                delay = stats.started + sent / rate - time.time()
                if delay > 0 and stop.wait(delay):
                    break
            _put(kinesis, stream_name, chunk, stats, max_attempts, backoff_s)
            sent += len(chunk)
            bar.update(len(chunk))
    stats.finished = time.time()
    return stats


def _chunks(records: Iterable[Mapping[str, Any]], per_call: int) -> Iterator[list[_Entry]]:
    """Entries in groups that fit one PutRecords call (count and bytes), lazily."""
    chunk: list[_Entry] = []
    size = 0
    for position, transaction in enumerate(records):
        entry = stream_entry(transaction, position)
        if chunk and (len(chunk) == per_call or size + entry.size > MAX_BYTES_PER_CALL):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry.size
    if chunk:
        yield chunk


def _put(
    kinesis: Any,
    stream_name: str,
    chunk: list[_Entry],
    stats: ProduceStats,
    max_attempts: int,
    backoff_s: float,
) -> None:
    """One chunk, retrying exactly the records each response reports failed."""
    from botocore.exceptions import BotoCoreError, ClientError

    pending = chunk
    for attempt in range(1, max_attempts + 1):
        try:
            response = kinesis.put_records(StreamName=stream_name, Records=[e.request for e in pending])
        except (ClientError, BotoCoreError) as exc:
            raise ProduceError(
                f"PutRecords failed ({exc}); {stats.records_put} records were put, "
                f"{len(pending)} of this call and every later one were not",
                stats,
            ) from exc
        stats.calls += 1
        accepted_at = time.time()
        failed = []
        errors = []
        for entry, result in zip(pending, response["Records"], strict=True):
            if result.get("ErrorCode"):
                failed.append(entry)
                errors.append(f"{result['ErrorCode']}: {result.get('ErrorMessage', '')}")
            else:
                stats.put_times[entry.transaction_id] = accepted_at
        stats.records_put += len(pending) - len(failed)
        if len(failed) != response.get("FailedRecordCount", 0):
            raise ProduceError(
                f"PutRecords reported FailedRecordCount {response.get('FailedRecordCount')} "
                f"but {len(failed)} records with an error code",
                stats,
            )
        if not failed:
            return
        if attempt == max_attempts:
            raise ProduceError(
                f"{len(failed)} records were not put after {max_attempts} attempts "
                f"(last error {errors[-1]}); {stats.records_put} were put",
                stats,
            )
        stats.retried_records += len(failed)
        pending = failed
        time.sleep(min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))


# ------------------------------------------------------------------ what to produce


def _instant(transaction: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(transaction["timestamp"]))


def retimed(transaction: Mapping[str, Any], shift: timedelta) -> dict[str, Any]:
    """The transaction moved in time by `shift`, its UTC offset kept."""
    return {**transaction, "timestamp": (_instant(transaction) + shift).isoformat()}


def ending_now(
    transactions: Iterable[Mapping[str, Any]], *, now: datetime, span: timedelta
) -> Iterator[dict[str, Any]]:
    """The transactions shifted together so the last (at `first + span`) lands at `now`."""
    shift: timedelta | None = None
    for tx in transactions:
        if shift is None:
            shift = now - span - _instant(tx)
        yield retimed(tx, shift)


def check_span(span: timedelta, count: int, source: str) -> None:
    """Refuse a replay whose oldest transactions the Lambda would reject as too old."""
    limit = timedelta(seconds=MAX_AGE_SECONDS - AGE_MARGIN_S)
    if span > limit:
        raise ValueError(
            f"{source}: {count} transactions span {span.total_seconds() / 86400:.1f} days, and the scoring "
            f"Lambda rejects transactions older than {MAX_AGE_SECONDS / 86400:.0f} days: produce fewer"
        )


def live_config(count: int, seed: int, fraud_rate: float | None = None) -> Any:
    """The generator's config for `count` live transactions: its default, with more users if needed,
    and `fraud_rate` if given.

    A population's users each keep their own rhythm (about 100 transactions over the config's days),
    so more users, not faster ones, fit a large count into LIVE_SPAN_DAYS of simulated time.
    """
    from training.population.config import GeneratorConfig

    default = GeneratorConfig(seed=seed)
    needed = math.ceil(count * default.days / LIVE_SPAN_DAYS)
    return GeneratorConfig(
        seed=seed,
        n_transactions=max(needed, default.n_transactions),
        fraud_rate=default.fraud_rate if fraud_rate is None else fraud_rate,
    )


def live_transactions(
    count: int, seed: int, now: datetime | None = None, fraud_rate: float | None = None
) -> Iterator[dict[str, Any]]:
    """`count` generated transactions, shifted to end now (their spacing, which the features use, kept).

    The generator runs in simulated time from its start onwards (days for a few thousand
    transactions); the Lambda rejects timestamps over an hour ahead, so the run is moved back in one
    piece: the stream carries the population's last few days, ending now.
    """
    from training.generate import iter_live

    now = now or datetime.now(UTC).replace(microsecond=0)
    config = live_config(count, seed, fraud_rate)
    first = last = None
    n = 0
    for tx in iter_live(config, start=now, limit=count):  # a first pass, cheap, for the span
        first = first or _instant(tx)
        last = _instant(tx)
        n += 1
    if first is None or last is None:
        return
    check_span(last - first, n, "the generator")
    yield from ending_now(iter_live(config, start=now, limit=count), now=now, span=last - first)


def scaled_amounts(transactions: Iterable[dict[str, Any]], factor: float) -> Iterator[dict[str, Any]]:
    """The transactions with their amounts times `factor`: shifted traffic, to see the drift alarms fire
    (docs/models.md)."""
    for tx in transactions:
        yield {**tx, "amount": round(float(tx["amount"]) * factor, 2)}


def file_transactions(path: Path, count: int | None, now: datetime | None = None) -> list[dict[str, Any]]:
    """The first `count` transactions of a CSV/Parquet file in time order, shifted to end now."""
    from training.io import read_transactions

    frame = read_transactions(path, labelled=False)
    rows: list[dict[str, Any]] = [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]
    rows = sorted(rows, key=_instant)[:count]
    span = _instant(rows[-1]) - _instant(rows[0])
    check_span(span, len(rows), str(path))
    return list(ending_now(rows, now=now or datetime.now(UTC).replace(microsecond=0), span=span))


def file_labels(path: Path, count: int | None, labelled_at: datetime) -> list[dict[str, Any]]:
    """The labels of the first `count` rows of a labelled CSV/Parquet file, each known at `labelled_at`.

    A label's own time is when it became known, not its transaction's: the file's timestamps are not
    read, and the Lambda refuses a `labelled_at` over an hour ahead of it or over 7 days behind it.
    """
    from training.io import read_transactions

    try:
        check_recent(labelled_at.timestamp(), time.time(), field="labelled_at")
    except InvalidRecordError as exc:
        raise ValueError(
            f"labelled at {labelled_at.isoformat()}: {exc.reason}, so the Lambda would quarantine every label"
        ) from exc
    rows = read_transactions(path, labelled=True).to_dict("records")[:count]
    stamp = labelled_at.isoformat()
    return [label_of({str(k): v for k, v in row.items()}, stamp) for row in rows]


# ------------------------------------------------------------------ command line


def _produce_command(args: argparse.Namespace) -> int:
    from infra.emulator import client
    from infra.state import read_stack_outputs, stack_endpoint

    outputs_path = Path(args.outputs)
    try:
        outputs = read_stack_outputs(outputs_path)
        endpoint = args.endpoint or stack_endpoint(outputs_path)
        stream = args.stream or outputs.get("StreamName")
        if not stream:
            raise ValueError(f"no stream: pass --stream, or deploy first so {outputs_path} names it")
        if args.labelled_at and not args.labels:
            raise ValueError("--labelled-at needs --labels")
        if args.labels:
            labelled_at = args.labelled_at or datetime.now(UTC).replace(microsecond=0)
            records: Iterable[dict[str, Any]] = file_labels(Path(args.labels), args.count, labelled_at)
        elif args.file:
            records = file_transactions(Path(args.file), args.count)
        else:
            records = list(live_transactions(args.count or DEFAULT_COUNT, args.seed))
        if args.amount_factor != 1.0:
            if args.labels:
                raise ValueError("--amount-factor shifts transactions, not labels")
            records = list(scaled_amounts(records, args.amount_factor))
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    what = "labels" if args.labels else "transactions"
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        stop.set()  # the call in flight finishes; a second Ctrl-C interrupts at once
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, interrupt)
    try:
        kinesis = client("kinesis", endpoint, args.region)
        stats = produce(kinesis, stream, records, rate=args.rate, stop=stop, unit=what[:-1])
    finally:
        signal.signal(signal.SIGINT, previous)
    if args.put_times:
        Path(args.put_times).parent.mkdir(parents=True, exist_ok=True)
        Path(args.put_times).write_text(json.dumps(stats.put_times))
    print(
        f"put {stats.records_put} {what} on {stream} in {stats.calls} calls "
        f"({stats.retried_records} retried), {stats.rate:.0f} records/s"
        + (" (stopped)" if stop.is_set() else "")
    )
    return 130 if stop.is_set() else 0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `produce`: put transactions, or labels, on the stream."""
    from infra.cli import at_least, instant, number_from, writable_file

    parser = subparsers.add_parser(
        "produce",
        help="put generated (or a file's) transactions, or a labelled file's labels, on the Kinesis stream",
        description="Put transactions on the stream in PutRecords calls of up to 500 (partition key = "
        "user_id), retrying the records a call reports failed. Live transactions come from the generator; "
        "a file's are replayed in time order. Either way the timestamps are shifted together so the last "
        "is now: their spacing, which the features read, is kept, and none is too old for the Lambda. "
        "With --labels, put instead one label per row of a labelled file (its is_fraud), known now or "
        "--labelled-at, with partition key = merchant_id: they update the merchants' risk profiles.",
    )
    add_stack_options(parser)
    parser.add_argument("--stream", help="stream name (default: StreamName from the stack's outputs)")
    parser.add_argument(
        "--count",
        type=at_least(1),
        help=f"how many transactions (default {DEFAULT_COUNT}; with --file or --labels, the whole file)",
    )
    parser.add_argument(
        "--rate", type=number_from(0, above=True), help="records per second (default: as fast as possible)"
    )
    parser.add_argument("--seed", type=at_least(0), default=7, help="generator seed (default 7)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--file", help="a CSV or Parquet file of transactions instead of the generator")
    source.add_argument(
        "--labels",
        metavar="FILE",
        help="a labelled CSV or Parquet file (with is_fraud): put one label per row instead of transactions",
    )
    parser.add_argument(
        "--labelled-at",
        metavar="TIME",
        type=instant,
        help="when the labels became known, ISO 8601 with a UTC offset (default: now)",
    )
    parser.add_argument(
        "--put-times", type=writable_file, help="write {transaction_id: put time} as JSON to this file"
    )
    parser.add_argument(
        "--amount-factor",
        type=number_from(0, above=True),
        default=1.0,
        help="multiply every amount (3: shifted traffic that the drift alarms catch; default 1)",
    )
    parser.set_defaults(run=_produce_command)
