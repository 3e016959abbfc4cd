"""The reasons' SHAP values, asked of XGBoost's C API directly: the same values as its Python API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from fraudwatch.adapters.model import load_model, shap_values
from fraudwatch.domain.features import FEATURE_NAMES


def rows(n: int, seed: int) -> np.ndarray:
    """Rows over and beyond the tiny model's ranges, a fifth of the values missing (NaN)."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(1.0, 30.0, size=(n, len(FEATURE_NAMES))).astype(np.float32)
    matrix[rng.random(matrix.shape) < 0.2] = np.nan
    return matrix


@pytest.mark.parametrize("n", [1, 3, 257])
def test_the_values_are_those_of_xgboosts_python_api(tiny_bundle: Path, n: int) -> None:
    booster = load_model(tiny_bundle, compiled=False).booster()
    matrix = rows(n, seed=n)
    expected = booster.predict(
        xgb.DMatrix(matrix, missing=np.nan, nthread=1), pred_contribs=True, validate_features=False
    )
    values = shap_values(booster, matrix)
    assert values.shape == (n, len(FEATURE_NAMES) + 1)
    np.testing.assert_array_equal(values, expected)
    assert np.count_nonzero(values[:, :-1]), "the rows move the score"


def test_rows_in_another_layout_or_type_give_the_same_values(tiny_bundle: Path) -> None:
    """The C API reads C-ordered float32: a column-major or float64 matrix must be copied to it first."""
    booster = load_model(tiny_bundle, compiled=False).booster()
    matrix = rows(5, seed=9)
    expected = shap_values(booster, matrix)
    np.testing.assert_array_equal(shap_values(booster, np.asfortranarray(matrix)), expected)
    np.testing.assert_array_equal(shap_values(booster, matrix.astype(np.float64)), expected)


def test_each_call_returns_its_own_values(tiny_bundle: Path) -> None:
    """XGBoost writes every prediction into one buffer of the Booster's: a result must not change after."""
    booster = load_model(tiny_bundle, compiled=False).booster()
    first_rows, second_rows = rows(4, seed=1), rows(4, seed=2)
    first = shap_values(booster, first_rows)
    kept = first.copy()
    second = shap_values(booster, second_rows)
    np.testing.assert_array_equal(first, kept)
    assert not np.array_equal(first, second)


def test_a_failed_call_raises_xgboosts_error_with_its_message(tiny_bundle: Path) -> None:
    """Rows narrower than the model's (which `feature_matrix` never lets through) fail a check of XGBoost."""
    booster = load_model(tiny_bundle, compiled=False).booster()
    narrow = np.ascontiguousarray(rows(2, seed=5)[:, :-3])
    with pytest.raises(xgb.core.XGBoostError, match="Check failed"):
        shap_values(booster, narrow)
