"""The model: an XGBoost Booster served with one `inplace_predict` per batch, loaded from a bundle
(its format: `fraudwatch.adapters.bundle`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xgboost as xgb

from fraudwatch.adapters.bundle import FEATURES_FILE, MODEL_FILE, read_bundle
from fraudwatch.domain.decision import Reason, Thresholds
from fraudwatch.errors import BundleError


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
    contents = read_bundle(bundle_dir)
    try:
        booster = xgb.Booster(model_file=str(contents.model_file))
    except xgb.core.XGBoostError as exc:
        raise BundleError(f"model bundle {bundle_dir} is corrupt: {exc}") from exc
    if booster.feature_names is not None and tuple(booster.feature_names) != contents.feature_names:
        raise BundleError(f"model bundle {bundle_dir}: {MODEL_FILE}'s features differ from {FEATURES_FILE}")
    booster.set_param({"nthread": 1})
    return XGBoostModel(booster, contents.feature_names, contents.thresholds, contents.version)


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else round(value, 4)
