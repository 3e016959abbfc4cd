"""Check a built ML runtime layer by serving from it alone, then byte-compile what serving imported.

Run with the runtime's Python in isolated mode and no site-packages (`python3.12 -I -S verify_layer.py
SITE`), so nothing outside SITE can stand in for a file the trimming removed. The check trains a tiny
Booster, saves it as UBJ, loads it back and makes the calls of fraudwatch's model adapter:
`inplace_predict` for the scores, a DMatrix and `pred_contribs` for the reasons. Then it loads tl2cgen's
runtime library as `fraudwatch.adapters.compiled` does (by path, without importing the tl2cgen package,
whose treelite and scipy dependencies the layer does not carry) and asks its version.
"""

from __future__ import annotations

import ctypes
import py_compile
import sys
import tempfile
from pathlib import Path


def serve_once(site: Path) -> list[Path]:
    """Load a model and score as the model adapter does, from `site` only; return the sources imported."""
    sys.path.insert(0, str(site))
    import numpy as np
    import xgboost as xgb

    names = [f"feature_{i}" for i in range(6)]
    rng = np.random.default_rng(7)
    features = rng.random((256, len(names)), dtype=np.float32)
    labels = (features[:, 0] > 0.5).astype(np.float32)
    training = xgb.DMatrix(features, label=labels, feature_names=names)
    trained = xgb.train({"objective": "binary:logistic", "max_depth": 2}, training, 4)
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / "model.ubj"
        trained.save_model(model_file)
        booster = xgb.Booster(model_file=str(model_file))
    batch = features[:8]
    scores = booster.inplace_predict(batch, validate_features=False)
    if scores.shape != (8,) or not ((scores >= 0) & (scores <= 1)).all():
        raise SystemExit(f"layer check failed: unexpected scores {scores!r}")
    explained = xgb.DMatrix(batch, missing=np.nan, feature_names=booster.feature_names)
    contributions = booster.predict(explained, pred_contribs=True)
    if contributions.shape != (8, len(names) + 1):
        raise SystemExit(f"layer check failed: contributions of shape {contributions.shape}")
    return sorted(
        Path(module.__file__)
        for module in list(sys.modules.values())
        if getattr(module, "__file__", None)
        and str(module.__file__).endswith(".py")
        and Path(module.__file__).is_relative_to(site)
    )


def tl2cgen_runtime_version(site: Path) -> str:
    """Load tl2cgen's runtime (lib/libtl2cgen.so and the OpenMP library it needs) from `site`."""
    runtime = ctypes.CDLL(str(site / "tl2cgen" / "lib" / "libtl2cgen.so"))
    runtime.TL2cgenQueryTL2cgenVersion.restype = ctypes.c_char_p
    version: bytes = runtime.TL2cgenQueryTL2cgenVersion()
    return version.decode()


def compile_for_read_only(sources: list[Path]) -> None:
    """Byte-compile with unchecked hashes: /opt is read-only and zip timestamps would void mtime checks."""
    for source in sources:
        py_compile.compile(
            str(source), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
        )


def main() -> int:
    """Verify the layer at argv[1] and compile the modules the serving path imports."""
    if sys.version_info[:2] != (3, 12):
        raise SystemExit(f"verify with python3.12 (the Lambda runtime), not {sys.version.split()[0]}")
    site = Path(sys.argv[1]).resolve()
    imported = serve_once(site)
    compile_for_read_only(imported)
    runtime = tl2cgen_runtime_version(site)
    sys.stdout.write(
        f"layer ok: served from {site} alone; {len(imported)} imported modules byte-compiled; "
        f"tl2cgen runtime {runtime} loads\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
