"""What the adapters share about AWS calls: which failures to retry, how, and FIFO ids.

Which failures are worth retrying, and how often, is decided here, in one place, by AWS's error code
and the HTTP status (never by message text, which AWS may fill with the request's values):
throttling, a 5xx, a timeout, a lost response or a dropped connection pass by themselves; anything
else (access denied, a missing table, topic or queue, a validation error, a KMS key that cannot be
used) does not, and retrying it at once only delays the batch.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from fraudwatch.errors import AwsCallError

# Standard retry mode retries throttling and 5xx with backoff; timeouts stay well under the function's.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)

FIFO_SUFFIX = ".fifo"
"""How the names of FIFO queues and SNS FIFO topics end."""

THROTTLING_CODES = frozenset(
    {
        # botocore's own list (botocore.retries.standard), which its standard retry mode retries
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        # SNS's and SQS's own, their KMS calls' included
        "Throttled",
        "KMSThrottling",
        "KmsThrottled",
        "KMS.ThrottlingException",
    }
)
SERVER_ERROR_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "ReplicatedWriteConflictException",
        # a TransactWriteItems cancelled because another transaction was writing the same item
        "TransactionConflict",
    }
)
CONDITION_FAILED = "ConditionalCheckFailed"
"""A conditional write's condition did not hold: another writer changed the item since it was read."""
UNPROCESSED_ITEMS = "UnprocessedItems"
UNPROCESSED_KEYS = "UnprocessedKeys"
"""The codes given to what DynamoDB still leaves unprocessed (throttled) at the last attempt."""
TRANSIENT_CODES = THROTTLING_CODES | SERVER_ERROR_CODES | {UNPROCESSED_ITEMS, UNPROCESSED_KEYS}
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})

ATTEMPTS = 4
"""Calls per chunk at most while its failures are transient (botocore retries each call beforehand)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an AWS call, or one entry of a batch call, failed: AWS's code, and the HTTP status if known."""

    code: str
    retryable: bool
    status: int | None = None
    cause: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of_exception(cls, exc: Exception) -> Failure:
        """The failure a botocore exception stands for.

        A ClientError by its code and HTTP status; otherwise by its class name, retryable when it is a
        connection error, a timeout or a lost response (as botocore's standard mode holds them), and
        permanent for anything else botocore raises (missing credentials, a parameter it refuses).
        """
        if isinstance(exc, ClientError):
            response: Mapping[str, Any] = exc.response
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(response.get("Error", {}).get("Code") or "Unknown")
            return cls(code, is_transient(code, status), status, exc)
        return cls(type(exc).__name__, isinstance(exc, ConnectionError | HTTPClientError), None, exc)

    @classmethod
    def of_entry(cls, entry: Mapping[str, Any]) -> Failure:
        """The failure of one `Failed` entry of PublishBatch or SendMessageBatch: transient if AWS's fault."""
        code = str(entry.get("Code") or "Unknown")
        return cls(code, is_transient(code) or not entry.get("SenderFault", True))


def failed_entries[E: Mapping[str, object]](
    entries: Sequence[E], response: Mapping[str, Any]
) -> list[tuple[E, Failure]]:
    """The entries a PublishBatch or SendMessageBatch response lists as `Failed`, each with its failure."""
    failed = response.get("Failed")
    if not failed:
        return []
    by_id = {entry["Id"]: entry for entry in entries}
    return [(by_id[f["Id"]], Failure.of_entry(f)) for f in failed]


def is_transient(code: str, status: int | None = None) -> bool:
    """Whether a failure of this AWS error code and HTTP status can pass by itself."""
    return code in TRANSIENT_CODES or status in TRANSIENT_STATUSES


def retry_batch[E](
    send: Callable[[list[E]], list[tuple[E, Failure]]],
    entries: list[E],
    sleep: Callable[[float], None],
) -> list[tuple[E, Failure]]:
    """Send entries, then again those that failed transiently, with backoff, ATTEMPTS calls at most.

    `send` makes one call and returns the entries it failed, each with its failure (all of them when the
    call itself failed). Return the entries given up: at once when their failure is permanent, after
    the last attempt when it is transient.
    """
    given_up: list[tuple[E, Failure]] = []
    for attempt in range(ATTEMPTS):
        failed = send(entries)
        if not failed:
            break
        last = attempt == ATTEMPTS - 1
        given_up.extend((entry, failure) for entry, failure in failed if last or not failure.retryable)
        entries = [entry for entry, failure in failed if failure.retryable and not last]
        if not entries:
            break
        sleep(backoff(attempt))
    return given_up


def backoff(attempt: int) -> float:
    """Seconds to wait before another attempt: exponential, full jitter, 50, 100, 200 ms at most."""
    return random.uniform(0, 0.05 * 2**attempt)


def given_up[E: AwsCallError](
    error: type[E], failed: Sequence[tuple[str, Failure]], *, operation: str, resource: str
) -> E:
    """The error of the keys a batch call gave up, told by a permanent failure if any, else the last."""
    failure = next((f for _, f in failed if not f.retryable), failed[-1][1])
    raised = error(
        failure.code,
        retryable=failure.retryable,
        operation=operation,
        resource=resource,
        status=failure.status,
        unwritten=(key for key, _ in failed),
    )
    raised.__cause__ = failure.cause
    return raised


def call_failed[E: AwsCallError](
    error: type[E],
    exc: Exception,
    *,
    operation: str,
    resource: str,
    unwritten: Iterable[str] | None = None,
) -> E:
    """The error of one AWS call that raised `exc`, told retryable or permanent (raise it `from exc`)."""
    failure = Failure.of_exception(exc)
    return error(
        failure.code,
        retryable=failure.retryable,
        operation=operation,
        resource=resource,
        status=failure.status,
        unwritten=unwritten,
    )


def fifo_id(value: str) -> str:
    """A FIFO deduplication or group id made from any id: those take 128 ASCII characters at most, ids
    may be longer or any Unicode."""
    return hashlib.sha256(value.encode()).hexdigest()
