"""A batch's feature rows as one matrix (fraudwatch.domain.rows)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.rows import feature_matrix

WIDTH = len(FEATURE_NAMES)


def test_rows_become_the_matrix_numpy_would_make_of_them_nan_included() -> None:
    rows = [tuple(float(i * WIDTH + j) for j in range(WIDTH)) for i in range(3)]
    rows[1] = (math.nan, *rows[1][1:])
    for dtype in (np.float32, np.float64):
        matrix = feature_matrix(rows, dtype)
        assert matrix.dtype == dtype
        np.testing.assert_array_equal(matrix, np.asarray(rows, dtype=dtype))


def test_no_rows_is_an_empty_matrix_of_the_features_width() -> None:
    assert feature_matrix([], np.float32).shape == (0, WIDTH)


def test_a_row_of_another_width_is_refused_not_spread_over_its_neighbours() -> None:
    rows = [(1.0,) * WIDTH, (2.0,) * (WIDTH + 1), (3.0,) * (WIDTH - 1)]
    with pytest.raises(ValueError, match=f"expected rows of {WIDTH} features"):
        feature_matrix(rows, np.float64)


def test_a_matrix_is_taken_as_it_is_when_its_shape_fits() -> None:
    given = np.arange(2 * WIDTH, dtype=np.float64).reshape(2, WIDTH)
    assert feature_matrix(given, np.float64) is given
    with pytest.raises(ValueError, match="shape"):
        feature_matrix(given.reshape(-1), np.float64)
