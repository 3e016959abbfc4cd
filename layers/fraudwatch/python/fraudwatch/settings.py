"""The Lambda's settings: one validated model read once, at cold start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudwatch.domain.decision import Thresholds
from fraudwatch.errors import ConfigurationError

DEFAULT_MODEL_DIR = "/opt/bundle"


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the function's resources are, and the optional threshold overrides."""

    profiles_table: str
    merchant_profiles_table: str
    decisions_table: str
    alerts_topic_arn: str
    quarantine_queue_url: str
    model_dir: Path
    flag_threshold: float | None = None
    reject_threshold: float | None = None
    lists_table: str | None = None
    """With rules_table: where the rules and lists are (none: the model decides alone)."""
    rules_table: str | None = None
    controls_max_age: float = 30.0
    """Seconds the function keeps the rules and lists it read (CONTROLS_MAX_AGE_SECONDS, 0-300)."""
    models_bucket: str | None = None
    """With models_table: the model registry (none: the layer's bundle scores alone). docs/models.md."""
    models_table: str | None = None
    models_max_age: float = 15.0
    """Seconds the function keeps the lineup it read (MODELS_MAX_AGE_SECONDS, 0-300)."""
    model_cache_dir: Path = Path("/tmp/models")  # noqa: S108 - Lambda's only writable directory
    drift_table: str | None = None
    """Where live drift counts go (none: drift is not measured)."""
    drift_window_seconds: int = 900
    drift_flush_seconds: float = 60.0
    labels_table: str | None = None
    """Where the labels' verdicts are kept for the matured metrics (none: merchant profiles only)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Read and validate the settings; a missing or malformed one raises ConfigurationError naming it."""
        return cls(
            profiles_table=_required(env, "PROFILES_TABLE"),
            merchant_profiles_table=_required(env, "MERCHANT_PROFILES_TABLE"),
            decisions_table=_required(env, "DECISIONS_TABLE"),
            alerts_topic_arn=_required(env, "ALERTS_TOPIC_ARN", prefix="arn:"),
            quarantine_queue_url=_required(env, "QUARANTINE_QUEUE_URL", prefix="http"),
            model_dir=Path(env.get("MODEL_DIR") or DEFAULT_MODEL_DIR),
            flag_threshold=_probability(env, "FLAG_THRESHOLD"),
            reject_threshold=_probability(env, "REJECT_THRESHOLD"),
            **_controls(env),
            **_models(env),
            labels_table=env.get("LABELS_TABLE", "").strip() or None,
        )

    def thresholds(self, bundled: Thresholds) -> Thresholds:
        """The bundle's thresholds with any deploy-time override applied."""
        flag = bundled.flag if self.flag_threshold is None else self.flag_threshold
        reject = bundled.reject if self.reject_threshold is None else self.reject_threshold
        try:
            return Thresholds(flag=flag, reject=reject)
        except ValueError as exc:
            raise ConfigurationError(f"FLAG_THRESHOLD/REJECT_THRESHOLD: {exc}") from exc


def _required(env: Mapping[str, str], name: str, prefix: str = "") -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"{name} is not set")
    if not value.startswith(prefix):
        raise ConfigurationError(f"{name} must start with {prefix!r}, got {value!r}")
    return value


def _controls(env: Mapping[str, str]) -> dict[str, Any]:
    """LISTS_TABLE and RULES_TABLE, both or neither, and CONTROLS_MAX_AGE_SECONDS."""
    lists, rules = env.get("LISTS_TABLE", "").strip(), env.get("RULES_TABLE", "").strip()
    if bool(lists) != bool(rules):
        raise ConfigurationError("LISTS_TABLE and RULES_TABLE go together: set both, or neither")
    max_age = optional_number(env, "CONTROLS_MAX_AGE_SECONDS", 0.0, 300.0)
    return {
        "lists_table": lists or None,
        "rules_table": rules or None,
        "controls_max_age": 30.0 if max_age is None else max_age,
    }


def _models(env: Mapping[str, str]) -> dict[str, Any]:
    """MODELS_BUCKET and MODELS_TABLE, both or neither, with MODELS_MAX_AGE_SECONDS; the DRIFT_ settings."""
    bucket, table = env.get("MODELS_BUCKET", "").strip(), env.get("MODELS_TABLE", "").strip()
    if bool(bucket) != bool(table):
        raise ConfigurationError("MODELS_BUCKET and MODELS_TABLE go together: set both, or neither")
    max_age = optional_number(env, "MODELS_MAX_AGE_SECONDS", 0.0, 300.0)
    window = optional_number(env, "DRIFT_WINDOW_SECONDS", 1.0, 86400.0)
    flush = optional_number(env, "DRIFT_FLUSH_SECONDS", 0.0, 900.0)
    return {
        "models_bucket": bucket or None,
        "models_table": table or None,
        "models_max_age": 15.0 if max_age is None else max_age,
        "model_cache_dir": Path(env.get("MODEL_CACHE_DIR") or "/tmp/models"),  # noqa: S108
        "drift_table": env.get("DRIFT_TABLE", "").strip() or None,
        "drift_window_seconds": 900 if window is None else int(window),
        "drift_flush_seconds": 60.0 if flush is None else flush,
    }


def _probability(env: Mapping[str, str], name: str) -> float | None:
    return optional_number(env, name, 0.0, 1.0)


def optional_number(env: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    """An optional number between `low` and `high` (None when unset)."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigurationError(
            f"{name} must be a number between {low:g} and {high:g}, got {raw!r}"
        ) from exc
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low:g} and {high:g}, got {value}")
    return value
