"""Live drift counts in DynamoDB: each window's rows counted in the champion's reference bins.

DriftTable (template.yaml): key `model_version` and `part`, one item per flush of one container:
`part` is `<window start, 12 digits>#<container>#<flush>`, `counts` the window's counts that container
gathered since its last flush (a list of numbers, column by column, SLOTS a column). Every container
writes items of its own with PutItem, so none contends for a hot item, a retried write overwrites
itself instead of counting twice, and the drift step sums a window's items with one Query. (An
UpdateItem ADD per bin would need one attribute a bin, 253 in an expression: moto's parser gives up.)

A container writes at most every `flush_every` seconds (60 by default) and when a window closes, not
per batch: the design's budget is 10 AWS calls per batch of 100 and a batch already spends 8 or 9.
What a container has not flushed when Lambda retires it (a minute of its traffic at most) is lost:
drift is a share of thousands of rows, and a minute of one container's hardly moves it. Items expire
after 30 days (TTL `expires_at`). A failed write is logged and its counts kept for the next flush:
drift never fails a batch.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import boto3
import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.adapters.aws import call_failed
from fraudwatch.domain.drift import COLUMNS, SLOTS, Reference, bin_counts
from fraudwatch.errors import AwsCallError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

WINDOW_SECONDS = 900
FLUSH_SECONDS = 60.0
TTL_SECONDS = 30 * 86400
KEPT_WINDOWS = 8
"""Windows of unflushed counts a container keeps while writes fail; older ones are dropped."""

logger = logging.getLogger("fraudwatch.drift")


class DriftStoreError(AwsCallError):
    """The drift table could not be read or written."""


class DriftWriter(Protocol):
    """Where a recorder's flushes go: DriftStore, or adapters.memory.MemoryDriftStore (benches, tests)."""

    def add(self, model_version: str, window: int, writer: str, counts: np.ndarray, expires_at: int) -> None:
        """Store one writer's counts of a window; raise DriftStoreError when it cannot."""
        ...


class DriftStore:
    """Reads and writes of DriftTable: the functions add counts, the drift step reads windows."""

    def __init__(self, table: str, client: DynamoDBClient | None = None) -> None:
        self.table = table
        self._client = client or boto3.client("dynamodb")

    def add(self, model_version: str, window: int, writer: str, counts: np.ndarray, expires_at: int) -> None:
        """Store one writer's counts ((len(COLUMNS), SLOTS)) of a window; the same writer again replaces."""
        self._call(
            "PutItem",
            lambda: self._client.put_item(
                TableName=self.table,
                Item={
                    "model_version": {"S": model_version},
                    "part": {"S": f"{window:012d}#{writer}"},
                    "counts": {"L": [{"N": str(int(n))} for n in counts.ravel()]},
                    "expires_at": {"N": str(expires_at)},
                },
            ),
        )

    def windows(self, model_version: str, since: int, until: int) -> dict[int, np.ndarray]:
        """A version's counts per window starting in [since, until), its writers' summed, by window."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "model_version = :v AND part BETWEEN :since AND :until",
            "ExpressionAttributeValues": {
                ":v": {"S": model_version},
                ":since": {"S": f"{since:012d}#"},
                ":until": {"S": f"{until - 1:012d}#~"},
            },
            "ConsistentRead": True,
        }
        found: dict[int, np.ndarray] = {}
        shape = (len(COLUMNS), SLOTS)
        while True:
            page = self._call("Query", lambda: self._client.query(**kwargs))
            for item in page.get("Items", []):
                window = int(item["part"]["S"].split("#", 1)[0])
                counts = np.array([int(n["N"]) for n in item["counts"]["L"]], dtype=np.int64).reshape(shape)
                found[window] = found.get(window, np.zeros(shape, dtype=np.int64)) + counts
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _call[T](self, operation: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            raise call_failed(DriftStoreError, exc, operation=operation, resource=self.table) from exc


class FlushingDriftRecorder:
    """The scoring service's drift recorder (domain/drift.py): counts per batch in memory, written to the
    drift table when a window closes or `flush_every` seconds have passed."""

    def __init__(
        self,
        store: DriftWriter,
        *,
        window_seconds: int = WINDOW_SECONDS,
        flush_every: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._window_seconds = window_seconds
        self._flush_every = flush_every
        self._clock = clock
        self._pending: dict[tuple[str, int], np.ndarray] = {}
        self._next_flush = clock() + flush_every
        self._writer = uuid.uuid4().hex[:12]
        self._flushes = 0
        self._window: int | None = None
        self.write_errors = 0

    def observe(
        self,
        model_version: str,
        reference: Reference,
        rows: Sequence[Sequence[float]],
        scores: Sequence[float],
    ) -> None:
        """Count a batch in its window; write what is due."""
        now = self._clock()
        window = int(now // self._window_seconds) * self._window_seconds
        key = (model_version, window)
        counts = bin_counts(reference, rows, scores)
        held = self._pending.get(key)
        self._pending[key] = counts if held is None else held + counts
        closed = self._window is not None and window != self._window
        self._window = window
        if now >= self._next_flush or closed:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Write every window's pending counts; those that fail wait for the next flush."""
        now = self._clock() if now is None else now
        self._next_flush = now + self._flush_every
        self._flushes += 1
        writer = f"{self._writer}#{self._flushes}"
        for (version, window), counts in sorted(self._pending.items(), key=lambda item: item[0][1]):
            try:
                self._store.add(version, window, writer, counts, int(now) + TTL_SECONDS)
            except DriftStoreError as exc:
                self.write_errors += 1
                logger.warning(
                    "drift counts not written: kept for the next flush",
                    extra={"operation": exc.operation, "code": exc.code, "window": window},
                )
                continue
            del self._pending[(version, window)]
        for key in sorted(self._pending, key=lambda k: k[1])[:-KEPT_WINDOWS]:
            del self._pending[key]
