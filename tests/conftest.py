"""Fixtures shared by every kind of test."""

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from fraudwatch.adapters.bundle import save_bundle
from fraudwatch.domain.drift import reference_of
from fraudwatch.domain.features import FEATURE_NAMES
from training.bundle import compile_bundle


def tiny_model(
    bundle: Path, version: str, rounds: int, flag: float = 0.5, reject: float = 0.9, *, compiled: bool = True
) -> Path:
    """A small real model bundle: fraud when the amount is far above the user's usual or velocity is
    high; its card carries the reference distribution of its training rows (for drift), and unless
    `compiled` is false it has its compiled model, as the training job's bundles do."""
    rng = np.random.default_rng(0)
    rows = 4000
    x = np.column_stack([rng.uniform(0, 1, rows) for _ in FEATURE_NAMES]).astype(np.float32)
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}
    x[:, col["amount"]] = rng.lognormal(3.5, 1.2, rows)
    x[:, col["amount_zscore"]] = rng.normal(0, 3, rows)
    x[:, col["velocity_1h"]] = rng.poisson(1.0, rows)
    y = (x[:, col["amount_zscore"]] > 4) | (x[:, col["velocity_1h"]] > 3) | (x[:, col["amount"]] > 2000)
    first = rng.uniform(0, 1, rows) < 0.2  # a user's first transaction: no spread, no previous one
    for name in ("amount_zscore", "amount_to_mean", "seconds_since_last"):
        x[first, col[name]] = np.nan
    y[first] = x[first, col["amount"]] > 2000
    data = xgb.DMatrix(x, label=y.astype(int), feature_names=list(FEATURE_NAMES))
    booster = xgb.train(
        {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 3, "seed": 0},
        data,
        num_boost_round=rounds,
    )
    reference = reference_of(x.astype(np.float64), booster.predict(data), ("amount", "amount_zscore"))
    save_bundle(
        bundle,
        booster,
        {"flag": flag, "reject": reject},
        {"version": version, "reference": reference.to_dict()},
    )
    if compiled:
        compile_bundle(bundle, booster)
    return bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' model bundle (version tiny-test-1)."""
    return tiny_model(tmp_path_factory.mktemp("bundle"), "tiny-test-1", rounds=30)


@pytest.fixture(scope="session")
def tiny_challenger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another version of it (tiny-test-2: fewer trees, so other scores, and thresholds 0.4 / 0.8), to
    publish and promote."""
    return tiny_model(tmp_path_factory.mktemp("challenger"), "tiny-test-2", rounds=5, flag=0.4, reject=0.8)
