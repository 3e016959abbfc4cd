"""The training side of drift: the reference distribution written into the model card.

Measured on the validation period (rows the model was not fitted on, scored as live rows will be), with
the binning the Lambda counts live rows in (`fraudwatch.domain.drift`); the top features are the model's
by total gain, the ones whose drift alarms.
"""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from fraudwatch.domain.drift import Reference, reference_of
from fraudwatch.domain.features import FEATURE_NAMES

TOP_FEATURES = 5


def training_reference(booster: xgb.Booster, features: np.ndarray, scores: np.ndarray) -> Reference:
    """The reference of these rows (FEATURE_NAMES' order) and their scores, with the model's top features."""
    gain = {
        name: float(np.sum(value))
        for name, value in booster.get_score(importance_type="total_gain").items()
        if name in FEATURE_NAMES
    }
    top = sorted(gain, key=lambda name: -gain[name])[:TOP_FEATURES]
    return reference_of(features, scores, tuple(top))
