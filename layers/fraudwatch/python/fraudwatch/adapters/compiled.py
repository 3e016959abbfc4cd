"""A model compiled to native code by tl2cgen, scored through tl2cgen's runtime library.

The training job compiles the Booster into a shared library (`training.bundle.compile_bundle`); here
that library is loaded by `libtl2cgen.so`, the runtime that the `tl2cgen` wheel ships, through its C API
(`TL2cgenPredictorLoad`, `TL2cgenDMatrixCreateFromMat`, `TL2cgenPredictorPredictBatch`: tl2cgen's
include/tl2cgen/c_api.h). The wheel's Python `Predictor` makes the same calls, but importing the
`tl2cgen` package imports treelite and scipy.sparse (about 200 ms, the cost the compiled model is there
to avoid), so the runtime library is found in the installed package without importing it.
Nothing here imports xgboost.
"""

from __future__ import annotations

import ctypes
import importlib.util
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudwatch.adapters.bundle import CompiledModelError

RUNTIME_PACKAGE = "tl2cgen"
RUNTIME_LIBRARY = "lib/libtl2cgen.so"
"""Where the tl2cgen wheel keeps its runtime, inside its package directory."""

_MISSING = ctypes.c_float(np.nan)
"""The value that marks a missing feature in a row: NaN, as XGBoost reads it."""
_runtime: ctypes.CDLL | None = None
_runtime_lock = threading.Lock()


class CompiledModel:
    """A compiled binary classifier: probabilities for float32 rows, one native call per batch."""

    def __init__(self, library: Path, *, runtime: ctypes.CDLL | None = None) -> None:
        self._lib = runtime or tl2cgen_runtime()
        self.library = library
        handle = ctypes.c_void_p()
        self._check(self._lib.TL2cgenPredictorLoad(str(library).encode(), 1, ctypes.byref(handle)))
        self._handle = handle
        weakref.finalize(self, self._lib.TL2cgenPredictorFree, handle)
        self.num_feature = self._int32("TL2cgenPredictorGetNumFeature")
        targets = self._int32("TL2cgenPredictorGetNumTarget")
        classes = (ctypes.c_int32 * max(targets, 1))()
        self._check(self._lib.TL2cgenPredictorGetNumClass(handle, classes))
        output = ctypes.c_char_p()
        self._check(self._lib.TL2cgenPredictorGetLeafOutputType(handle, ctypes.byref(output)))
        if targets != 1 or classes[0] != 1 or output.value != b"float32":
            raise CompiledModelError(
                f"{library}: {targets} target(s), {list(classes)} class(es), {output.value!r} outputs; "
                "expected one binary target of float32 scores"
            )
        # the runtime's predict "may be called by only one thread at a time" (tl2cgen's Predictor)
        self._lock = threading.Lock()

    def predict(self, matrix: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Probabilities for a matrix of shape (rows, num_feature); NaN is missing."""
        # the runtime reads rows of float32 one after the other: a column-major or float64 matrix is copied
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if matrix.ndim != 2:
            raise ValueError(f"a matrix of rows, not an array of shape {matrix.shape}")
        rows, columns = matrix.shape
        if columns != self.num_feature:
            raise ValueError(f"rows of {columns} features for a model of {self.num_feature}")
        # the compiled code adds each tree's leaf to the output: it must start at zero
        scores = np.zeros(rows, dtype=np.float32)
        if rows == 0:
            return scores
        data = ctypes.c_void_p()
        with self._lock:
            self._check(
                self._lib.TL2cgenDMatrixCreateFromMat(
                    matrix.ctypes.data, b"float32", rows, columns, ctypes.byref(_MISSING), ctypes.byref(data)
                )
            )
            try:
                out = scores.ctypes.data
                predicted = self._lib.TL2cgenPredictorPredictBatch(self._handle, data, 0, 0, out)
                self._check(predicted)
            finally:
                self._lib.TL2cgenDMatrixFree(data)
        return scores

    def _int32(self, getter: str) -> int:
        value = ctypes.c_int32()
        self._check(getattr(self._lib, getter)(self._handle, ctypes.byref(value)))
        return value.value

    def _check(self, status: int) -> None:
        if status != 0:
            message = self._lib.TL2cgenGetLastError()
            raise CompiledModelError(f"{self.library}: {message.decode(errors='replace')}")


def tl2cgen_runtime() -> ctypes.CDLL:
    """tl2cgen's runtime library, loaded once (CompiledModelError when it is not installed)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = _declared(ctypes.CDLL(str(_runtime_path())))
        return _runtime


def _runtime_path() -> Path:
    try:
        spec = importlib.util.find_spec(RUNTIME_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = None if spec is None else spec.submodule_search_locations
    if not locations:
        raise CompiledModelError(f"the {RUNTIME_PACKAGE} runtime is not installed")
    path = Path(next(iter(locations))) / RUNTIME_LIBRARY
    if not path.is_file():
        raise CompiledModelError(f"the {RUNTIME_PACKAGE} runtime has no {RUNTIME_LIBRARY}")
    return path


def _declared(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the C API's signatures (c_api.h), so pointers are passed whole and sizes as 64 bits."""
    pointer, out_pointer, int32_out = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p
    signatures: dict[str, list[Any]] = {
        "TL2cgenPredictorLoad": [ctypes.c_char_p, ctypes.c_int, out_pointer],
        "TL2cgenPredictorFree": [pointer],
        "TL2cgenPredictorGetNumFeature": [pointer, int32_out],
        "TL2cgenPredictorGetNumTarget": [pointer, int32_out],
        "TL2cgenPredictorGetNumClass": [pointer, int32_out],
        "TL2cgenPredictorGetLeafOutputType": [pointer, ctypes.POINTER(ctypes.c_char_p)],
        "TL2cgenDMatrixCreateFromMat": [
            pointer,
            ctypes.c_char_p,
            ctypes.c_uint64,
            ctypes.c_uint64,
            pointer,
            out_pointer,
        ],
        "TL2cgenDMatrixFree": [pointer],
        "TL2cgenPredictorPredictBatch": [pointer, pointer, ctypes.c_int, ctypes.c_int, pointer],
    }
    for name, arguments in signatures.items():
        function = getattr(lib, name)
        function.argtypes = arguments
        function.restype = ctypes.c_int
    lib.TL2cgenGetLastError.argtypes = []
    lib.TL2cgenGetLastError.restype = ctypes.c_char_p
    return lib
