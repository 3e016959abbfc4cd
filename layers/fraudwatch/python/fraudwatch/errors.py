"""The exceptions fraudwatch raises; callers tell them apart by type, never by message."""


class FraudwatchError(Exception):
    """Base of every fraudwatch error."""


class InvalidRecordError(FraudwatchError):
    """A record that can never be processed: it goes to quarantine, it is never retried."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ConfigurationError(FraudwatchError):
    """A missing or malformed setting; stops a cold start."""


class BundleError(ConfigurationError):
    """A model bundle that is missing, corrupt, or does not match the code's features."""


class StaleBundleError(BundleError):
    """A sound model bundle trained on other features than this code computes: retrain it."""


class TransientError(FraudwatchError):
    """A failure worth retrying (throttling, a 5xx, a timeout)."""


class ProfileStoreError(TransientError):
    """The profile store could not be read or written."""


class DecisionStoreError(TransientError):
    """The decision store could not be written."""


class AlertPublishError(TransientError):
    """Alerts could not be published."""


class QuarantineError(TransientError):
    """Malformed records could not be put in quarantine."""
