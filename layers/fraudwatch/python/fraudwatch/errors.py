"""The exceptions fraudwatch raises; callers tell them apart by type, never by message.

Which AWS failures are worth retrying is decided in `fraudwatch.adapters.aws`.
"""

from __future__ import annotations

from collections.abc import Iterable


class FraudwatchError(Exception):
    """Base of every fraudwatch error."""


class InvalidRecordError(FraudwatchError):
    """A record that can never be processed: it goes to quarantine, it is never retried."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class TransactionIdTaken(InvalidRecordError):
    """A transaction id already decided for another user's payment: refused, the decision made kept."""

    def __init__(self, transaction_id: str) -> None:
        super().__init__("transaction_id", "already decided for another payment: transaction ids are unique")
        self.transaction_id = transaction_id


class UsageError(FraudwatchError):
    """A command given input it cannot use (a missing or unreadable file, options that clash): exit 2.

    Its message says what is wrong and what to do; the command line prints it after the command's name.
    """


class ConfigurationError(FraudwatchError):
    """A missing or malformed setting; stops a cold start."""


class BundleError(ConfigurationError):
    """A model bundle that is missing, corrupt, or does not match the code's features."""


class StaleBundleError(BundleError):
    """A sound model bundle trained on other features than this code computes: retrain it."""


class TransientError(FraudwatchError):
    """A failure worth retrying (throttling, a 5xx, a timeout)."""


class AwsCallError(FraudwatchError):
    """An AWS call that failed: its operation and resource, AWS's error code, and whether retrying can help.

    Its records are failed and redelivered either way; `retryable` says whether the adapter kept trying.
    `unwritten` are the keys a write left unwritten (None: all it was given). AWS's own message is never
    kept here, since it can echo the request's values (ids, amounts).
    """

    def __init__(
        self,
        code: str,
        *,
        retryable: bool = True,
        operation: str = "",
        resource: str = "",
        status: int | None = None,
        unwritten: Iterable[str] | None = None,
    ) -> None:
        where = f"{operation} on {resource}" if resource else operation
        kind = "retryable" if retryable else "permanent"
        super().__init__(f"{where} failed: {code} ({kind})" if where else f"{code} ({kind})")
        self.code = code
        self.retryable = retryable
        self.operation = operation
        self.resource = resource
        self.status = status
        self.unwritten = None if unwritten is None else frozenset(unwritten)


class ProfileStoreError(AwsCallError):
    """The profile store could not be read or written."""


class DecisionStoreError(AwsCallError):
    """The decision store could not be written."""


class AlertPublishError(AwsCallError):
    """Alerts could not be published."""


class QuarantineError(AwsCallError):
    """Malformed records could not be put in quarantine."""
