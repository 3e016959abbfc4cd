"""The model: scored by its compiled library (tl2cgen) when the bundle has one that loads, else by the
XGBoost Booster with one `inplace_predict` per batch; explained (SHAP) by the Booster either way,
through XGBoost's C API (`shap_values`).

The bundle's format is `fraudwatch.adapters.bundle`'s. xgboost is imported when the Booster is first
needed, not with this module: a function that scores with the compiled library imports it at its first
alert, unless its init runs ahead of requests (SnapStart, provisioned concurrency: `load_model`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from fraudwatch.adapters.bundle import FEATURES_FILE, MODEL_FILE, BundleContents, read_bundle, read_compiled
from fraudwatch.adapters.compiled import CompiledModel
from fraudwatch.domain.decision import Reason, Thresholds
from fraudwatch.domain.rows import feature_matrix
from fraudwatch.errors import BundleError

if TYPE_CHECKING:
    import xgboost as xgb

logger = logging.getLogger("fraudwatch.model")

INIT_AHEAD = frozenset({"snap-start", "provisioned-concurrency"})
"""Lambda's AWS_LAMBDA_INITIALIZATION_TYPE values whose init no request waits for: there the Booster is
loaded at init, so the first alert after a restore does not import xgboost."""
PROBE_TOLERANCE = 1e-6
"""How far the compiled library's scores of the bundle's probe rows may be from XGBoost's."""


class XGBoostModel:
    """An XGBoost model with its feature names, thresholds and version (the domain's Model port).

    `booster` is the Booster, or its model file to load when first needed; `compiled`, when given,
    scores instead of the Booster (`scorer` says which does)."""

    def __init__(
        self,
        booster: xgb.Booster | Path,
        feature_names: tuple[str, ...],
        thresholds: Thresholds,
        version: str,
        *,
        compiled: CompiledModel | None = None,
    ):
        self._booster = booster
        self._compiled = compiled
        self.feature_names = feature_names
        self.thresholds = thresholds
        self.version = version

    @property
    def scorer(self) -> Literal["compiled", "xgboost"]:
        """What scores: the compiled library or the Booster."""
        return "xgboost" if self._compiled is None else "compiled"

    def score(self, rows: Sequence[Sequence[float]]) -> list[float]:
        """Fraud probabilities for a batch of feature rows, in one predict call."""
        if len(rows) == 0:
            return []
        matrix = feature_matrix(rows, np.float32)
        if self._compiled is not None:
            return self._compiled.predict(matrix).tolist()  # type: ignore[no-any-return]
        return self.booster().inplace_predict(matrix, validate_features=False).tolist()  # type: ignore[no-any-return]

    def explain(self, rows: Sequence[Sequence[float]], top: int) -> list[tuple[Reason, ...]]:
        """The `top` features that push each row's score up the most (SHAP values, in log-odds).

        The rows are in the bundle's feature order (`load_model` checked the Booster's against it), so
        they go to XGBoost without names and the Booster does not compare them.
        """
        if not rows:
            return []
        matrix = feature_matrix(rows, np.float32)
        contributions = shap_values(self.booster(), matrix)[:, :-1]
        names = self.feature_names
        orders = np.argsort(-contributions, axis=1)[:, :top].tolist()
        explained = []
        for values, contribs, order in zip(matrix.tolist(), contributions.tolist(), orders, strict=True):
            pushing = (i for i in order if contribs[i] > 0)
            explained.append(
                tuple(Reason(names[i], _finite(values[i]), round(contribs[i], 4)) for i in pushing)
            )
        return explained

    def booster(self) -> xgb.Booster:
        """The Booster, loaded (and xgboost imported) at the first call when it was given as a file."""
        if isinstance(self._booster, Path):
            self._booster = _load_booster(self._booster, self.feature_names)
        return self._booster


def load_model(bundle_dir: Path, *, compiled: bool = True) -> XGBoostModel:
    """Load a bundle, checking it is complete and built for this code's features.

    With `compiled` (the default) and a compiled library in the bundle that loads here and scores the
    bundle's probe rows as XGBoost did, that library scores and the Booster is loaded when first needed;
    otherwise (a bundle made before compiled models, a library for another platform, no tl2cgen runtime)
    the Booster scores, loaded now, and one log line says why. `compiled=False` always scores with the
    Booster (benchmarks compare the two)."""
    contents = read_bundle(bundle_dir)
    engine = _compiled_model(bundle_dir, contents) if compiled else None
    if engine is None or os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") in INIT_AHEAD:
        booster: xgb.Booster | Path = _load_booster(contents.model_file, contents.feature_names)
    else:
        booster = contents.model_file
    return XGBoostModel(
        booster, contents.feature_names, contents.thresholds, contents.version, compiled=engine
    )


def _compiled_model(bundle_dir: Path, contents: BundleContents) -> CompiledModel | None:
    """The bundle's compiled library, checked against its probe rows; None (and why, logged) if unusable."""
    try:
        found = read_compiled(bundle_dir, contents)
        if found is None:
            reason = "the bundle has no compiled model"
        else:
            engine = CompiledModel(found.library)
            scores = engine.predict(found.probe_rows)
            error = float(np.max(np.abs(scores - found.probe_scores), initial=0.0))
            if error <= PROBE_TOLERANCE:
                return engine
            reason = f"its scores of the probe rows differ from XGBoost's by up to {error:.3g}"
    except (OSError, BundleError) as exc:  # OSError: a library that dlopen refuses
        reason = str(exc)
    logger.warning(
        "compiled model unusable: scoring with XGBoost",
        extra={"model_version": contents.version, "reason": reason},
    )
    return None


def _load_booster(model_file: Path, feature_names: tuple[str, ...]) -> xgb.Booster:
    import xgboost as xgb

    try:
        booster = xgb.Booster(model_file=str(model_file))
    except xgb.core.XGBoostError as exc:
        raise BundleError(f"model bundle {model_file.parent} is corrupt: {exc}") from exc
    if booster.feature_names is not None and tuple(booster.feature_names) != feature_names:
        raise BundleError(
            f"model bundle {model_file.parent}: {MODEL_FILE}'s features differ from {FEATURES_FILE}"
        )
    booster.set_param({"nthread": 1})
    return booster


_DENSE_CONFIG = b'{"missing": NaN, "nthread": 1}'
"""XGDMatrixCreateFromDense's config: NaN marks a missing value, as `score` reads it; one thread."""
_CONTRIBUTIONS_CONFIG = (
    b'{"type": 2, "training": false, "iteration_begin": 0, "iteration_end": 0, "strict_shape": false}'
)
"""XGBoosterPredictFromDMatrix's config for SHAP values (type 2: `pred_contribs=True`), all trees."""
_library: ctypes.CDLL | None = None
_library_lock = threading.Lock()


def shap_values(booster: xgb.Booster, matrix: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Each row's SHAP values, one per feature and the bias last: what `booster.predict(xgb.DMatrix(matrix,
    missing=np.nan, nthread=1), pred_contribs=True, validate_features=False)` returns.

    Made by the same two calls of XGBoost's C API (c_api.h) that `DMatrix` and `predict` make, without the
    Python around them: its dispatch on the data's type, its JSON and its copies cost a third of an
    explanation in the handler (a batch's alerts: 500 -> 330 µs), and the handler explains in one batch
    out of two. `matrix` holds rows of the Booster's width; C-ordered float32 (`feature_matrix` makes
    them) is passed as it is, any other layout or type copied to it first.
    """
    lib = _xgboost_library()
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    rows, columns = matrix.shape
    interface = b'{"data": [%d, true], "shape": [%d, %d], "typestr": "<f4", "version": 3}' % (
        matrix.ctypes.data,
        rows,
        columns,
    )
    data = ctypes.c_void_p()
    _check(lib, lib.XGDMatrixCreateFromDense(interface, _DENSE_CONFIG, ctypes.byref(data)))
    try:
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()
        out = ctypes.POINTER(ctypes.c_float)()
        _check(
            lib,
            lib.XGBoosterPredictFromDMatrix(
                booster.handle,
                data,
                _CONTRIBUTIONS_CONFIG,
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(out),
            ),
        )
        # the output is the Booster's buffer, reused by its next prediction: copied out
        return np.ctypeslib.as_array(out, shape=tuple(shape[: dims.value])).copy()
    finally:
        lib.XGDMatrixFree(data)


def _xgboost_library() -> ctypes.CDLL:
    """The libxgboost that xgboost loaded (dlopen of its path returns the same library), declared here."""
    global _library
    with _library_lock:
        if _library is None:
            import xgboost as xgb

            lib = ctypes.CDLL(xgb.build_info()["libxgboost"])
            lib.XGDMatrixCreateFromDense.argtypes = [
                ctypes.c_char_p,
                ctypes.c_char_p,
                ctypes.POINTER(ctypes.c_void_p),
            ]
            lib.XGBoosterPredictFromDMatrix.argtypes = [
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_char_p,
                ctypes.POINTER(ctypes.POINTER(ctypes.c_uint64)),
                ctypes.POINTER(ctypes.c_uint64),
                ctypes.POINTER(ctypes.POINTER(ctypes.c_float)),
            ]
            lib.XGDMatrixFree.argtypes = [ctypes.c_void_p]
            lib.XGBGetLastError.restype = ctypes.c_char_p
            _library = lib
        return _library


def _check(lib: ctypes.CDLL, status: int) -> None:
    """XGBoost's own error, with its message, for a C call that failed (as its Python package raises it)."""
    if status != 0:
        import xgboost as xgb

        raise xgb.core.XGBoostError(lib.XGBGetLastError().decode(errors="replace"))


def _finite(value: float) -> float | None:
    return None if value != value else round(value, 4)  # NaN: a missing value
