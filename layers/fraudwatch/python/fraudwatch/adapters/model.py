"""The model bundle: an XGBoost Booster served with one `inplace_predict` per batch.

A bundle is a directory: `model.ubj` (the Booster), `features.json` (the ordered feature names),
`thresholds.json` (flag and reject scores) and `model_card.json` (version, data, metrics, libraries).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from fraudwatch.domain.decision import Reason, Thresholds
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.errors import BundleError, StaleBundleError

BUNDLE_FILES = ("model.ubj", "features.json", "thresholds.json", "model_card.json")


class XGBoostModel:
    """A Booster with its feature names, thresholds and version (the domain's Model port)."""

    def __init__(
        self, booster: xgb.Booster, feature_names: tuple[str, ...], thresholds: Thresholds, version: str
    ):
        self._booster = booster
        self.feature_names = feature_names
        self.thresholds = thresholds
        self.version = version

    def score(self, rows: Sequence[Sequence[float]]) -> list[float]:
        """Fraud probabilities for a batch of feature rows, in one predict call."""
        matrix = np.asarray(rows, dtype=np.float32)
        return self._booster.inplace_predict(matrix, validate_features=False).tolist()  # type: ignore[no-any-return]

    def explain(self, rows: Sequence[Sequence[float]], top: int) -> list[tuple[Reason, ...]]:
        """The `top` features that push each row's score up the most (SHAP values, in log-odds)."""
        if not rows:
            return []
        matrix = np.asarray(rows, dtype=np.float32)
        data = xgb.DMatrix(matrix, missing=np.nan, feature_names=self._booster.feature_names, nthread=1)
        contributions = self._booster.predict(data, pred_contribs=True)[:, :-1]
        explained = []
        for values, contribs in zip(matrix, contributions, strict=True):
            order = np.argsort(-contribs)[:top]
            explained.append(
                tuple(
                    Reason(self.feature_names[i], _finite(float(values[i])), round(float(contribs[i]), 4))
                    for i in order
                    if contribs[i] > 0
                )
            )
        return explained


def load_model(bundle_dir: Path) -> XGBoostModel:
    """Load a bundle, checking it is complete and built for this code's features."""
    missing = [name for name in BUNDLE_FILES if not (bundle_dir / name).is_file()]
    if missing:
        raise BundleError(
            f"model bundle {bundle_dir} is missing {', '.join(missing)} (run `fraudwatch train`)"
        )
    features = tuple(_read_json(bundle_dir / "features.json")["feature_names"])
    if features != FEATURE_NAMES:
        raise StaleBundleError(
            f"model bundle {bundle_dir} was trained on features {list(features)}, "
            f"but this code computes {list(FEATURE_NAMES)}: retrain with `fraudwatch train`"
        )
    limits = _read_json(bundle_dir / "thresholds.json")
    card = _read_json(bundle_dir / "model_card.json")
    try:
        thresholds = Thresholds(flag=float(limits["flag"]), reject=float(limits["reject"]))
        version = str(card["version"])
        booster = xgb.Booster(model_file=str(bundle_dir / "model.ubj"))
    except (KeyError, TypeError, ValueError, xgb.core.XGBoostError) as exc:
        raise BundleError(f"model bundle {bundle_dir} is corrupt: {exc}") from exc
    if booster.feature_names is not None and tuple(booster.feature_names) != features:
        raise BundleError(f"model bundle {bundle_dir}: model.ubj's features differ from features.json")
    booster.set_param({"nthread": 1})
    return XGBoostModel(booster, features, thresholds, version)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path} must hold a JSON object")
    return data


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else round(value, 4)
