"""A local Kinesis event-source runner: Lambda's event source mapping, for endpoints where it cannot run.

Neither SAM CLI nor moto consumes a Kinesis stream, so this module does what Lambda's poller does: it
reads every shard through the ordinary Kinesis API (ListShards, GetShardIterator, GetRecords) and calls
the handler with Lambda-shaped events and a context, honouring the mapping's settings exactly as
template.yaml states them:

- BatchSize, MaximumBatchingWindowInSeconds (and Lambda's 6 MB payload limit) shape each batch;
- StartingPosition TRIM_HORIZON, LATEST or AT_TIMESTAMP (StartingPositionTimestamp) opens each shard;
- with ReportBatchItemFailures, a response listing batchItemFailures checkpoints before the lowest
  failed sequence number (compared as integers) and only the rest is retried; an empty, missing or
  unknown itemIdentifier fails the whole batch, as does an exception from the handler;
- BisectBatchOnFunctionError splits a failed batch in two (splitting does not consume retries);
- after MaximumRetryAttempts, and for records older than MaximumRecordAgeInSeconds, the batch is
  given up: the on-failure destination (SQS) gets the message Lambda sends, and reading moves on.

Differences from Lambda, on purpose: one batch at a time per shard whatever ParallelizationFactor says
(order within the shard is kept, which is stronger than Lambda's per-partition-key order); handler
calls are serialised unless the handler is declared thread-safe (a Lambda container runs one
invocation at a time, and handlers keep per-invocation state at module scope); checkpoints live in
memory only, so a restart begins again at the starting position (the handler is idempotent); shards
are listed once at start (a parent shard is read before its children).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fraudwatch.errors import ConfigurationError, FraudwatchError, UsageError
from infra.events import lambda_record
from infra.invoke import DEFAULT_BUNDLE, LocalContext
from infra.state import add_stack_options, require_stack_outputs, stack_endpoint
from infra.template import TEMPLATE, load_template

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]

STARTING_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
UNLIMITED = -1
# Lambda's synchronous invocation payload limit; a batch is cut before its event would exceed it.
MAX_EVENT_BYTES = 6 * 1024 * 1024
# What one record adds to the event besides its base64 data: keys, ids, ARNs.
RECORD_OVERHEAD_BYTES = 600
GET_RECORDS_LIMIT = 10_000
UNKNOWN_LAG = -1  # a throttled read: neither idle nor worth an extra wait
WHOLE_BATCH = -1  # judge_response's verdict when no record of the batch can be checkpointed
THROTTLE_BACKOFF_S = 1.0
MAX_RETRY_BACKOFF_S = 5.0


class RunnerError(FraudwatchError):
    """A shard could not be read, or the runner did not finish in time."""


@dataclass(frozen=True, kw_only=True)
class MappingSettings:
    """A Kinesis event source mapping's settings; defaults are Lambda's own for an omitted property."""

    starting_position: str
    batch_size: int = 100
    batching_window_s: float = 0.0
    bisect_on_error: bool = False
    maximum_retry_attempts: int = UNLIMITED
    maximum_record_age_s: int = UNLIMITED
    parallelization_factor: int = 1
    report_batch_item_failures: bool = False
    # The template's value: an ARN, or the short form of its intrinsic ("!GetAtt OnFailureQueue.Arn").
    on_failure_destination: str | None = None
    starting_position_timestamp: float | None = None

    def __post_init__(self) -> None:
        if self.starting_position not in STARTING_POSITIONS:
            raise ConfigurationError(
                f"StartingPosition: {self.starting_position!r} is not one of {STARTING_POSITIONS}"
            )
        if self.starting_position == "AT_TIMESTAMP" and self.starting_position_timestamp is None:
            raise ConfigurationError("StartingPositionTimestamp: required with StartingPosition AT_TIMESTAMP")
        if not 1 <= self.batch_size <= 10_000:
            raise ConfigurationError(f"BatchSize: {self.batch_size} is outside 1..10000")
        if not 0 <= self.batching_window_s <= 300:
            raise ConfigurationError(
                f"MaximumBatchingWindowInSeconds: {self.batching_window_s} is outside 0..300"
            )
        if self.maximum_retry_attempts < UNLIMITED:
            raise ConfigurationError(f"MaximumRetryAttempts: {self.maximum_retry_attempts} is below -1")
        if self.maximum_record_age_s < UNLIMITED:
            raise ConfigurationError(f"MaximumRecordAgeInSeconds: {self.maximum_record_age_s} is below -1")

    @property
    def on_failure_resource(self) -> str | None:
        """The logical id of the on-failure destination when the template names one of its resources."""
        destination = self.on_failure_destination or ""
        for prefix in ("!GetAtt ", "!Ref "):
            if destination.startswith(prefix):
                return destination.removeprefix(prefix).split(".", 1)[0]
        return None

    @classmethod
    def from_template(
        cls, path: Path = TEMPLATE, function: str = "ScoringFunction", event: str = "TransactionsStream"
    ) -> MappingSettings:
        """The settings of one Kinesis event of one function, as the template states them."""
        doc = load_template(path)
        try:
            source = doc["Resources"][function]["Properties"]["Events"][event]
        except (KeyError, TypeError):
            raise ConfigurationError(f"{Path(path).name}: {function} has no event {event}") from None
        if source.get("Type") != "Kinesis":
            raise ConfigurationError(f"{function}.{event}: a {source.get('Type')} event, not Kinesis")
        props = source.get("Properties", {})
        defaults = {name: p.get("Default") for name, p in doc.get("Parameters", {}).items()}

        def value(key: str, default: Any = None) -> Any:
            raw = props.get(key, default)
            if isinstance(raw, dict) and set(raw) == {"Ref"} and raw["Ref"] in defaults:
                raw = defaults[raw["Ref"]]
            if isinstance(raw, dict):
                raise ConfigurationError(f"{function}.{event}.{key}: cannot resolve {raw} locally")
            return raw

        timestamp = value("StartingPositionTimestamp")
        return cls(
            starting_position=str(value("StartingPosition")),
            batch_size=int(value("BatchSize", 100)),
            batching_window_s=float(value("MaximumBatchingWindowInSeconds", 0)),
            bisect_on_error=_boolean(value("BisectBatchOnFunctionError", False)),
            maximum_retry_attempts=int(value("MaximumRetryAttempts", UNLIMITED)),
            maximum_record_age_s=int(value("MaximumRecordAgeInSeconds", UNLIMITED)),
            parallelization_factor=int(value("ParallelizationFactor", 1)),
            report_batch_item_failures="ReportBatchItemFailures"
            in (props.get("FunctionResponseTypes") or []),
            on_failure_destination=_short_form(
                props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            ),
            starting_position_timestamp=None if timestamp is None else float(timestamp),
        )


def _boolean(raw: Any) -> bool:
    if isinstance(raw, str):
        return raw.strip().lower() == "true"
    return bool(raw)


def _short_form(value: Any) -> str | None:
    """An intrinsic in CloudFormation's short form, so the setting stays a string."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        return "!GetAtt " + ".".join(value["Fn::GetAtt"])
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return f"!Ref {value['Ref']}"
    raise ConfigurationError(f"DestinationConfig.OnFailure.Destination: unsupported value {value}")


@dataclass
class RunnerStats:
    """What the runner did; counts over every shard."""

    batches: int = 0  # batches read from the stream
    records_delivered: int = 0  # records the handler processed successfully (each counted once)
    invocations: int = 0
    retries: int = 0  # invocations repeated after a failure
    bisections: int = 0
    records_sent_to_on_failure: int = 0
    errors: int = 0  # failed invocations: handler exceptions and failure responses


TIMING_SAMPLES = 100_000
"""Records whose timings the runner keeps (the latest): enough for a demo, bounded for a long run."""


@dataclass
class Timings:
    """Where each delivered record's time went from its arrival on the stream to its decision, in seconds."""

    in_stream: deque[float] = field(default_factory=lambda: deque(maxlen=TIMING_SAMPLES))
    """Arrival to being read by GetRecords: the polling interval, and any backlog."""
    batching: deque[float] = field(default_factory=lambda: deque(maxlen=TIMING_SAMPLES))
    """Read to the invocation's start: the batching window filling, and earlier batches of the shard."""
    handler: deque[float] = field(default_factory=lambda: deque(maxlen=TIMING_SAMPLES))
    """The invocation that decided it: the handler's whole batch."""

    def copy(self) -> Timings:
        """The timings so far, apart from what the runner adds later."""
        return Timings(deque(self.in_stream), deque(self.batching), deque(self.handler))


@dataclass(frozen=True)
class ShardRecord:
    """One record as GetRecords returns it, reduced to what the event needs."""

    sequence_number: str
    partition_key: str
    data: bytes
    arrival: float  # epoch seconds
    read_at: float = 0.0  # epoch seconds, when GetRecords returned it

    @property
    def event_bytes(self) -> int:
        """Roughly what this record adds to the event's JSON."""
        return (len(self.data) + 2) // 3 * 4 + RECORD_OVERHEAD_BYTES


@dataclass
class _Invocation:
    """The outcome of calling the handler on some records."""

    request_id: str
    failed: bool = False
    function_error: str | None = None  # "Unhandled" when the handler raised
    retry_from: int | None = None  # index of the lowest failed record, or WHOLE_BATCH


@dataclass
class _Work:
    """A batch, or part of one, on its way to success or the on-failure destination."""

    records: list[ShardRecord]
    attempts: int = 0  # failed invocations counted against MaximumRetryAttempts
    invocations: int = 0
    last: _Invocation | None = None


def on_failure_message(
    *,
    condition: str,
    records: Sequence[ShardRecord],
    shard_id: str,
    stream_arn: str,
    function_arn: str,
    invocation: _Invocation | None,
    invoke_count: int,
    now: float,
) -> dict[str, Any]:
    """The invocation record Lambda sends to a Kinesis mapping's on-failure destination."""
    response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if invocation is not None and invocation.function_error:
        response["functionError"] = invocation.function_error
    return {
        "requestContext": {
            "requestId": invocation.request_id if invocation else str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": _iso(now),
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0].sequence_number,
            "endSequenceNumber": records[-1].sequence_number,
            "approximateArrivalOfFirstRecord": _iso(records[0].arrival),
            "approximateArrivalOfLastRecord": _iso(records[-1].arrival),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def judge_response(response: Any, records: Sequence[ShardRecord], report_failures: bool) -> int | None:
    """None for success, the index of the lowest failed record, or WHOLE_BATCH.

    Lambda reads batchItemFailures only with ReportBatchItemFailures on; then a missing, null or empty
    list is success, and an empty, null or unknown itemIdentifier fails the whole batch.
    """
    if not report_failures or not isinstance(response, Mapping):
        return None
    failures = response.get("batchItemFailures")
    if not failures:
        return None
    if not isinstance(failures, list):
        return WHOLE_BATCH
    index = {r.sequence_number: i for i, r in enumerate(records)}
    failed = []
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(identifier, str) or identifier not in index:
            return WHOLE_BATCH
        failed.append(identifier)
    # Sequence numbers are decimal strings of varying length (moto's are small integers): compare as int.
    return index[min(failed, key=int)]


class EventSourceRunner:
    """Polls every shard of a stream and invokes a handler as Lambda's event source mapping would."""

    def __init__(
        self,
        *,
        stream_name: str,
        handler: Handler,
        settings: MappingSettings,
        kinesis: Any = None,
        sqs: Any = None,
        on_failure_queue_url: str | None = None,
        function_name: str = "ScoringFunction",
        poll_interval_s: float = 0.2,
        retry_backoff_s: float = 0.2,
        thread_safe_handler: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.on_failure_destination and not on_failure_queue_url:
            raise ConfigurationError(
                f"the mapping sends failed batches to {settings.on_failure_destination}: "
                "pass on_failure_queue_url (or a settings without a destination)"
            )
        if kinesis is None:
            import boto3

            kinesis = boto3.client("kinesis")
        if sqs is None and on_failure_queue_url:
            import boto3

            sqs = boto3.client("sqs")
        self.stream_name = stream_name
        self.handler = handler
        self.settings = settings
        self.kinesis = kinesis
        self.sqs = sqs
        self.on_failure_queue_url = on_failure_queue_url
        self.function_name = function_name
        self.poll_interval_s = poll_interval_s
        self.retry_backoff_s = retry_backoff_s
        self.clock = clock
        self.ready = threading.Event()  # set once every shard iterator is open
        self._invoke_lock: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if thread_safe_handler else threading.Lock()
        )
        self._stats = RunnerStats()
        self._stats_lock = threading.Lock()
        self._timings = Timings()
        self._stop = threading.Event()
        self.stream_arn = ""
        self.region = ""
        self.function_arn = ""

    @property
    def stats(self) -> RunnerStats:
        """A snapshot of the counts so far."""
        with self._stats_lock:
            return replace(self._stats)

    def count(self, **deltas: int) -> None:
        """Add to the counts (thread-safe)."""
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + delta)

    def run(self, stop: threading.Event) -> RunnerStats:
        """Poll until `stop` is set; each shard finishes the invocation in flight, then the call returns.

        When a shard cannot be read, the runner sets `stop` itself (every shard stops) and raises RunnerError.
        """
        return self._run(stop, lambda readers: False)

    def run_until_idle(
        self, idle_s: float = 1.0, timeout_s: float = 60, stop: threading.Event | None = None
    ) -> RunnerStats:
        """Poll until every shard has been caught up with nothing to do for `idle_s` seconds (or `stop`)."""
        deadline = time.monotonic() + timeout_s

        def done(readers: list[_ShardReader]) -> bool:
            now = time.monotonic()
            if all(r.idle_for(now) >= idle_s for r in readers):
                return True
            if now > deadline:
                raise RunnerError(f"not idle after {timeout_s:g} s: {self.stats}")
            return False

        return self._run(stop or threading.Event(), done)

    def _run(self, stop: threading.Event, done: Callable[[list[_ShardReader]], bool]) -> RunnerStats:
        self._stop = stop
        if self.settings.parallelization_factor > 1:
            log.info(
                "ParallelizationFactor=%d: read as 1, one batch at a time per shard (order kept)",
                self.settings.parallelization_factor,
            )
        self._describe_stream()
        readers = self._open_shards()
        self.ready.set()
        threads = [threading.Thread(target=r.run, name=f"runner-{r.shard_id}", daemon=True) for r in readers]
        for thread in threads:
            thread.start()
        try:
            while not stop.wait(min(self.poll_interval_s, 0.1)):
                failed = [r for r in readers if r.error is not None]
                if failed:
                    raise RunnerError(f"{failed[0].shard_id}: {failed[0].error}") from failed[0].error
                if done(readers):
                    break
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            self.ready.clear()
        return self.stats

    def _describe_stream(self) -> None:
        summary = self.kinesis.describe_stream_summary(StreamName=self.stream_name)[
            "StreamDescriptionSummary"
        ]
        self.stream_arn = summary["StreamARN"]
        _, _, _, self.region, account, _ = self.stream_arn.split(":", 5)
        self.function_arn = f"arn:aws:lambda:{self.region}:{account}:function:{self.function_name}"

    def _open_shards(self) -> list[_ShardReader]:
        shards = list(_list_shards(self.kinesis, self.stream_name))
        readers = {s["ShardId"]: _ShardReader(self, s["ShardId"]) for s in shards}
        for shard in shards:
            parents = [shard.get("ParentShardId"), shard.get("AdjacentParentShardId")]
            readers[shard["ShardId"]].parents = [readers[p] for p in parents if p in readers]
        for reader in readers.values():
            reader.open()
        return list(readers.values())

    def invoke(self, records: Sequence[ShardRecord], shard_id: str) -> _Invocation:
        """Call the handler once on these records, as Lambda would, and judge its response."""
        event = {
            "Records": [
                lambda_record(
                    r.data,
                    partition_key=r.partition_key,
                    sequence_number=r.sequence_number,
                    arrival=r.arrival,
                    shard_id=shard_id,
                    stream_arn=self.stream_arn,
                    region=self.region,
                )
                for r in records
            ]
        }
        context = LocalContext(function_name=self.function_name, invoked_function_arn=self.function_arn)
        outcome = _Invocation(request_id=context.aws_request_id)
        self.count(invocations=1)
        try:
            with self._invoke_lock:
                started = time.time()
                response = self.handler(event, context)
                ended = time.time()
        # Lambda's contract: any exception the function raises is a function error for the whole batch.
        except Exception as exc:
            log.warning("invocation failed shard=%s records=%d error=%r", shard_id, len(records), exc)
            outcome.failed, outcome.function_error, outcome.retry_from = True, "Unhandled", WHOLE_BATCH
            return outcome
        outcome.retry_from = judge_response(response, records, self.settings.report_batch_item_failures)
        outcome.failed = outcome.retry_from is not None
        if not outcome.failed:
            self._time(records, started, ended)
        return outcome

    @property
    def timings(self) -> Timings:
        """Where the delivered records' time went, so far (a copy)."""
        with self._stats_lock:
            return self._timings.copy()

    def _time(self, records: Sequence[ShardRecord], started: float, ended: float) -> None:
        with self._stats_lock:
            for record in records:
                self._timings.in_stream.append(max(record.read_at - record.arrival, 0.0))
                self._timings.batching.append(max(started - record.read_at, 0.0))
                self._timings.handler.append(ended - started)

    def give_up(self, work: _Work, condition: str, shard_id: str) -> None:
        """Send the on-failure record for these records (or just drop them without a destination)."""
        message = on_failure_message(
            condition=condition,
            records=work.records,
            shard_id=shard_id,
            stream_arn=self.stream_arn,
            function_arn=self.function_arn,
            invocation=work.last,
            invoke_count=work.invocations,
            now=self.clock(),
        )
        log.warning(
            "records given up condition=%s shard=%s first=%s last=%s count=%d",
            condition,
            shard_id,
            work.records[0].sequence_number,
            work.records[-1].sequence_number,
            len(work.records),
        )
        if self.on_failure_queue_url:
            self.sqs.send_message(QueueUrl=self.on_failure_queue_url, MessageBody=json.dumps(message))
        self.count(records_sent_to_on_failure=len(work.records))


def _list_shards(kinesis: Any, stream_name: str) -> Iterator[dict[str, Any]]:
    response = kinesis.list_shards(StreamName=stream_name)
    yield from response["Shards"]
    while response.get("NextToken"):
        response = kinesis.list_shards(NextToken=response["NextToken"])
        yield from response["Shards"]


class _ShardReader:
    """One shard: read batches in order, deliver each until it succeeds or is given up."""

    def __init__(self, runner: EventSourceRunner, shard_id: str) -> None:
        self.runner = runner
        self.settings = runner.settings
        self.shard_id = shard_id
        self.parents: list[_ShardReader] = []
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self._iterator: str | None = None
        self._last_read: str | None = None
        self._buffer: deque[ShardRecord] = deque()
        self._idle_since: float | None = None

    def idle_for(self, now: float) -> float:
        """How long this shard has been caught up with nothing buffered (0 when busy)."""
        if self.finished.is_set():
            return float("inf")
        since = self._idle_since
        return 0.0 if since is None else now - since

    def open(self, after: str | None = None) -> None:
        """Get an iterator at the starting position, or just after a record already read."""
        args: dict[str, Any] = {"StreamName": self.runner.stream_name, "ShardId": self.shard_id}
        if after is not None:
            args |= {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
        elif self.parents:
            # A child shard holds only records newer than its parents': read it from its start.
            args["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            args["ShardIteratorType"] = self.settings.starting_position
            if self.settings.starting_position == "AT_TIMESTAMP":
                args["Timestamp"] = datetime.fromtimestamp(
                    self.settings.starting_position_timestamp or 0, UTC
                )
        self._iterator = self.runner.kinesis.get_shard_iterator(**args)["ShardIterator"]

    def run(self) -> None:
        """The shard's thread: wait for parent shards, then read until stopped or the shard ends."""
        stop = self.runner._stop
        try:
            for parent in self.parents:
                while not parent.finished.wait(0.1):
                    if stop.is_set():
                        return
            while not stop.is_set():
                batch = self._next_batch(stop)
                if batch:
                    self._deliver(batch, stop)
                elif self._iterator is None and not self._buffer:
                    break
        except Exception as exc:  # reported by the runner's main loop, which stops every shard
            log.exception("shard failed shard=%s", self.shard_id)
            self.error = exc
        finally:
            self.finished.set()

    def _next_batch(self, stop: threading.Event) -> list[ShardRecord]:
        """Gather records until the batch is full, the batching window closes, or the shard ends."""
        deadline: float | None = None
        while not stop.is_set() and self._iterator is not None:
            if len(self._buffer) >= self.settings.batch_size:
                break
            fetched, behind = self._get_records(self.settings.batch_size - len(self._buffer))
            self._buffer.extend(fetched)
            now = time.monotonic()
            if self._buffer:
                self._idle_since = None
                deadline = deadline if deadline is not None else now + self.settings.batching_window_s
                if now >= deadline:
                    break
            elif self._idle_since is None and behind == 0:
                self._idle_since = now
            # Behind the tip, read on at once (Kinesis may answer empty pages while behind); at the tip, poll.
            if behind == 0:
                wait = (
                    self.runner.poll_interval_s
                    if deadline is None
                    else min(self.runner.poll_interval_s, deadline - now)
                )
                stop.wait(max(wait, 0.0))
        if stop.is_set():
            return []
        return self._take_batch()

    def _take_batch(self) -> list[ShardRecord]:
        batch: list[ShardRecord] = []
        size = 0
        while self._buffer and len(batch) < self.settings.batch_size:
            size += self._buffer[0].event_bytes
            if batch and size > MAX_EVENT_BYTES:
                break
            batch.append(self._buffer.popleft())
        return batch

    def _get_records(self, limit: int) -> tuple[list[ShardRecord], int]:
        """One GetRecords call: its records and how far behind the tip they are (ms, or UNKNOWN_LAG)."""
        from botocore.exceptions import ClientError

        try:
            response = self.runner.kinesis.get_records(
                ShardIterator=self._iterator, Limit=min(limit, GET_RECORDS_LIMIT)
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ExpiredIteratorException":
                self.open(after=self._last_read)
                return [], 0
            if code in ("ProvisionedThroughputExceededException", "LimitExceededException"):
                self.runner._stop.wait(THROTTLE_BACKOFF_S)
                return [], UNKNOWN_LAG
            raise
        self._iterator = response.get("NextShardIterator")  # None: the shard is closed and fully read
        records = [_shard_record(r) for r in response["Records"]]
        if records:
            self._last_read = records[-1].sequence_number
        return records, int(response.get("MillisBehindLatest", 0))

    def _deliver(self, batch: list[ShardRecord], stop: threading.Event) -> None:
        """Invoke until every record of the batch has succeeded or been given up."""
        self.runner.count(batches=1)
        pending = deque([_Work(batch)])
        while pending:
            work = self._drop_expired(pending.popleft())
            if not work.records:
                continue
            outcome = self.runner.invoke(work.records, self.shard_id)
            work.invocations += 1
            work.last = outcome
            if not outcome.failed:
                self.runner.count(records_delivered=len(work.records))
                continue
            self.runner.count(errors=1)
            if stop.is_set():
                return  # the invocation in flight is done; the rest is read again at the next start
            whole = outcome.retry_from == WHOLE_BATCH
            done = 0 if whole else outcome.retry_from or 0
            self.runner.count(records_delivered=done)
            work.records = work.records[done:]
            # A partial failure is retried from its lowest failed record; only a whole failure bisects.
            if whole and self.settings.bisect_on_error and len(work.records) > 1:
                # Splitting does not consume the retry quota (Lambda's rule): the halves keep the count.
                half = len(work.records) // 2
                pending.extendleft(
                    [replace(work, records=work.records[half:]), replace(work, records=work.records[:half])]
                )
                self.runner.count(bisections=1)
                continue
            work.attempts += 1
            limit = self.settings.maximum_retry_attempts
            if limit != UNLIMITED and work.attempts > limit:
                self.runner.give_up(work, "RetryAttemptsExhausted", self.shard_id)
                continue
            self.runner.count(retries=1)
            stop.wait(min(self.runner.retry_backoff_s * 2 ** (work.attempts - 1), MAX_RETRY_BACKOFF_S))
            pending.appendleft(work)

    def _drop_expired(self, work: _Work) -> _Work:
        """Give up the records older than MaximumRecordAgeInSeconds (a prefix: arrival order)."""
        max_age = self.settings.maximum_record_age_s
        if max_age == UNLIMITED:
            return work
        now = self.runner.clock()
        expired = 0
        while expired < len(work.records) and now - work.records[expired].arrival > max_age:
            expired += 1
        if expired:
            self.runner.give_up(
                replace(work, records=work.records[:expired]), "RecordAgeExceeded", self.shard_id
            )
        return replace(work, records=work.records[expired:])


def _shard_record(record: Mapping[str, Any]) -> ShardRecord:
    arrival = record["ApproximateArrivalTimestamp"]
    return ShardRecord(
        sequence_number=str(record["SequenceNumber"]),
        partition_key=str(record["PartitionKey"]),
        data=bytes(record["Data"]),
        arrival=arrival.timestamp() if isinstance(arrival, datetime) else float(arrival),
        read_at=time.time(),
    )


# ------------------------------------------------------------------ command line


def output_for(resource: str, template: Path = TEMPLATE) -> str | None:
    """The name of the template output whose value is `!Ref resource` (for a queue: its URL)."""
    for name, output in load_template(template).get("Outputs", {}).items():
        if output.get("Value") == {"Ref": resource}:
            return str(name)
    return None


def on_failure_queue_url(
    settings: MappingSettings, outputs: Mapping[str, str], template: Path = TEMPLATE
) -> str:
    """The on-failure queue's URL, found through the template's outputs."""
    resource = settings.on_failure_resource
    name = output_for(resource, template) if resource else None
    if name is None or name not in outputs:
        raise ConfigurationError(
            f"cannot find the URL of the on-failure destination {settings.on_failure_destination} in the "
            "stack's outputs: pass --on-failure-queue-url"
        )
    return outputs[name]


def _run_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from infra.emulator import client, emulator_environment
    from infra.invoke import load_handler

    outputs_path = Path(args.outputs)
    outputs = require_stack_outputs(outputs_path)
    try:
        endpoint = args.endpoint or stack_endpoint(outputs_path)
        settings = MappingSettings.from_template(Path(args.template))
        stream = args.stream or outputs.get("StreamName")
        if not stream:
            raise ConfigurationError("no stream: pass --stream, or an outputs file naming StreamName")
        queue_url = args.on_failure_queue_url
        if settings.on_failure_destination and not queue_url:
            queue_url = on_failure_queue_url(settings, outputs, Path(args.template))
        overrides = emulator_environment(endpoint, args.region) if endpoint else None
        handler = load_handler(
            outputs, bundle_dir=Path(args.bundle), endpoint_url=endpoint, overrides=overrides
        )
        runner = EventSourceRunner(
            stream_name=stream,
            handler=handler,
            settings=settings,
            kinesis=client("kinesis", endpoint, args.region),
            sqs=client("sqs", endpoint, args.region),
            on_failure_queue_url=queue_url,
            function_name=outputs.get("ScoringFunctionName", "ScoringFunction"),
        )
    except (OSError, KeyError, ValueError) as exc:
        raise UsageError(f"{exc}; check --outputs, --template and --bundle") from exc
    stop = threading.Event()
    result: list[RunnerStats] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result.append(
                runner.run_until_idle(args.until_idle, 24 * 3600, stop)
                if args.until_idle
                else runner.run(stop)
            )
        except Exception as exc:  # reported below, in the main thread
            failure.append(exc)

    # A daemon: a second Ctrl-C, while the batch in flight finishes, exits at once.
    thread = threading.Thread(target=work, name="runner", daemon=True)
    print(
        f"polling {stream} ({settings.batch_size} per batch); Ctrl-C stops after the batch in flight",
        file=sys.stderr,
    )
    with tqdm(unit="rec", desc="scored") as bar:
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.5)
                bar.update(runner.stats.records_delivered - bar.n)
        except KeyboardInterrupt:
            stop.set()
            thread.join()
    if failure:
        raise RunnerError(f"the runner stopped: {failure[0]}") from failure[0]
    stats = result[0] if result else runner.stats
    print(
        f"{stats.records_delivered} records in {stats.invocations} invocations "
        f"({stats.retries} retries, {stats.bisections} bisections, "
        f"{stats.records_sent_to_on_failure} to the on-failure queue)"
    )
    return 0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `run`: the local event-source runner with the real handler."""
    parser = subparsers.add_parser(
        "run",
        help="poll the stream and invoke the scoring handler, as Lambda's event source mapping would",
        description="Read every shard of the stream and invoke the real scoring handler in this process with "
        "Lambda-shaped batches, honouring the mapping's settings in template.yaml (batch size, window, "
        "starting position, partial-failure checkpoints, bisect, retries, record age, on-failure queue). "
        "Works against the embedded emulator, LocalStack or AWS. Ctrl-C stops after the batch in flight.",
    )
    add_stack_options(parser)
    parser.add_argument("--stream", help="stream name (default: StreamName from the stack's outputs)")
    parser.add_argument(
        "--on-failure-queue-url", help="on-failure queue URL (default: from the stack's outputs)"
    )
    parser.add_argument("--template", default=str(TEMPLATE), help="the SAM template holding the mapping")
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="model bundle directory")
    parser.add_argument(
        "--until-idle", type=float, metavar="SECONDS", help="stop once every shard has been idle this long"
    )
    parser.set_defaults(run=_run_command)
