"""The model registry's and drift's settings: read at cold start, a bad one named."""

from pathlib import Path

import pytest

from fraudwatch.errors import ConfigurationError
from fraudwatch.settings import Settings

BASE = {
    "PROFILES_TABLE": "p",
    "MERCHANT_PROFILES_TABLE": "m",
    "DECISIONS_TABLE": "d",
    "ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:a.fifo",
    "QUARANTINE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo",
}


def test_without_a_registry_the_layers_bundle_scores_alone_and_drift_is_off():
    settings = Settings.from_env(BASE)
    assert (settings.models_bucket, settings.models_table, settings.drift_table) == (None, None, None)
    assert settings.models_max_age == 15.0
    assert settings.model_cache_dir == Path("/tmp/models")


def test_the_registry_and_drift_settings_are_read():
    settings = Settings.from_env(
        BASE
        | {
            "MODELS_BUCKET": "b",
            "MODELS_TABLE": "t",
            "MODELS_MAX_AGE_SECONDS": "0",
            "DRIFT_TABLE": "drift",
            "DRIFT_WINDOW_SECONDS": "60",
            "DRIFT_FLUSH_SECONDS": "5",
        }
    )
    assert (settings.models_bucket, settings.models_table, settings.models_max_age) == ("b", "t", 0.0)
    assert (settings.drift_table, settings.drift_window_seconds, settings.drift_flush_seconds) == (
        "drift",
        60,
        5.0,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MODELS_BUCKET": "b"}, "MODELS_BUCKET and MODELS_TABLE"),
        ({"MODELS_TABLE": "t"}, "MODELS_BUCKET and MODELS_TABLE"),
        ({"MODELS_MAX_AGE_SECONDS": "soon"}, "MODELS_MAX_AGE_SECONDS"),
        ({"MODELS_MAX_AGE_SECONDS": "301"}, "MODELS_MAX_AGE_SECONDS"),
        ({"DRIFT_WINDOW_SECONDS": "0"}, "DRIFT_WINDOW_SECONDS"),
        ({"DRIFT_FLUSH_SECONDS": "-1"}, "DRIFT_FLUSH_SECONDS"),
    ],
)
def test_a_bad_setting_stops_the_cold_start_naming_it(env: dict[str, str], named: str):
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_env(BASE | env)
