"""The model bundle's format: the one place that names its files and reads and writes them.

A bundle is a directory: `model.ubj` (the XGBoost Booster), `features.json` (the ordered feature
names), `thresholds.json` (flag and reject scores, and whatever else training records about them)
and `model_card.json` (version, data, metrics, libraries, and the `reference` distribution of
every feature and of the score that drift is measured against: `fraudwatch.domain.drift`). Training
adds `model_card.md` for people; the Lambda never reads it. `save_bundle` writes the files,
`read_bundle` reads them back and refuses a bundle that is incomplete or made for other features
than this code's; loading the Booster itself is the model adapter's (`fraudwatch.adapters.model`).

Optionally (`COMPILED_FILES`), the same model compiled to native code: `model.so` (tl2cgen's output for
`model.ubj`, built by `training.bundle.compile_bundle`) and `compiled.json` (the sha256 of the
`model.ubj` it was compiled from, its features, the platform and tools that built it, and probe rows
with XGBoost's scores of them, which a loaded library must reproduce). A bundle without them, or whose
library cannot be used, scores with the Booster. The version names the model, never the library.
Nothing here imports xgboost.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudwatch.domain.decision import Thresholds
from fraudwatch.domain.drift import Reference
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.errors import BundleError, StaleBundleError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import xgboost as xgb

MODEL_FILE = "model.ubj"
FEATURES_FILE = "features.json"
THRESHOLDS_FILE = "thresholds.json"
CARD_FILE = "model_card.json"
CARD_MARKDOWN = "model_card.md"
BUNDLE_FILES = (MODEL_FILE, FEATURES_FILE, THRESHOLDS_FILE, CARD_FILE)
"""What the Lambda reads; a bundle without one of them is refused."""
COMPILED_LIBRARY = "model.so"
COMPILED_CARD = "compiled.json"
COMPILED_FILES = (COMPILED_LIBRARY, COMPILED_CARD)
"""The compiled model: optional, used only when both are there."""


class CompiledModelError(BundleError):
    """A compiled model that cannot be used here: built from another model, for another platform, not
    loadable (no tl2cgen runtime, a broken library), or not the bundle's binary classifier. Scoring goes
    on with the Booster."""


@dataclass(frozen=True, slots=True)
class BundleContents:
    """What a bundle says besides the model itself."""

    feature_names: tuple[str, ...]
    thresholds: Thresholds
    version: str
    model_file: Path
    reference: Reference | None = None
    """None for a bundle trained before drift was measured: it scores, without drift."""


def save_bundle(
    bundle_dir: Path, booster: xgb.Booster, thresholds: Mapping[str, Any], card: Mapping[str, Any]
) -> None:
    """Write a bundle's files into `bundle_dir` (which exists): the model, this code's feature names,
    `thresholds` (at least `flag` and `reject`) and the card (at least `version`)."""
    booster.save_model(str(bundle_dir / MODEL_FILE))
    _write_json(bundle_dir / FEATURES_FILE, {"feature_names": list(FEATURE_NAMES)})
    _write_json(bundle_dir / THRESHOLDS_FILE, thresholds)
    _write_json(bundle_dir / CARD_FILE, card)


def read_bundle(bundle_dir: Path) -> BundleContents:
    """A bundle's feature names, thresholds and version, checked complete and made for this code."""
    missing = [name for name in BUNDLE_FILES if not (bundle_dir / name).is_file()]
    if missing:
        raise BundleError(
            f"model bundle {bundle_dir} is missing {', '.join(missing)} (run `fraudwatch train`)"
        )
    features = tuple(_read_json(bundle_dir / FEATURES_FILE)["feature_names"])
    if features != FEATURE_NAMES:
        raise StaleBundleError(
            f"model bundle {bundle_dir} was trained on features {list(features)}, "
            f"but this code computes {list(FEATURE_NAMES)}: retrain with `fraudwatch train`"
        )
    limits = _read_json(bundle_dir / THRESHOLDS_FILE)
    card = _read_json(bundle_dir / CARD_FILE)
    try:
        thresholds = Thresholds(flag=float(limits["flag"]), reject=float(limits["reject"]))
        version = str(card["version"])
        reference = None if card.get("reference") is None else Reference.from_dict(card["reference"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"model bundle {bundle_dir} is corrupt: {exc}") from exc
    return BundleContents(features, thresholds, version, bundle_dir / MODEL_FILE, reference)


@dataclass(frozen=True, slots=True)
class CompiledContents:
    """A bundle's compiled library and the probe rows it must score as XGBoost did."""

    library: Path
    probe_rows: npt.NDArray[np.float32]
    probe_scores: npt.NDArray[np.float32]


def save_compiled(
    bundle_dir: Path,
    library: Path,
    *,
    feature_names: Sequence[str],
    probe_rows: npt.NDArray[np.float32],
    probe_scores: npt.NDArray[np.float32],
    built_with: Mapping[str, str],
) -> None:
    """Add a compiled library of the bundle's `model.ubj` (already written) to `bundle_dir`."""
    import numpy as np

    (bundle_dir / COMPILED_LIBRARY).write_bytes(library.read_bytes())
    card = {
        "library": COMPILED_LIBRARY,
        "model_sha256": _sha256(bundle_dir / MODEL_FILE),
        "feature_names": list(feature_names),
        "machine": platform.machine(),
        "system": platform.system(),
        "built_with": dict(built_with),
        # JSON has no NaN: a missing feature is null
        "probe_rows": [[None if np.isnan(v) else float(v) for v in row] for row in probe_rows],
        "probe_scores": [float(v) for v in probe_scores],
    }
    _write_json(bundle_dir / COMPILED_CARD, card)


def read_compiled(bundle_dir: Path, contents: BundleContents) -> CompiledContents | None:
    """The bundle's compiled library, or None when it has none; CompiledModelError when the library was
    built from another model file, for other features, or for another platform than this one."""
    import numpy as np

    if not all((bundle_dir / name).is_file() for name in COMPILED_FILES):
        return None
    card = _read_json(bundle_dir / COMPILED_CARD)
    try:
        digest, features = card["model_sha256"], tuple(card["feature_names"])
        built_for = (card["system"], card["machine"])
        rows = np.array(card["probe_rows"], dtype=np.float32)  # null -> NaN
        scores = np.array(card["probe_scores"], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as exc:
        raise CompiledModelError(f"{bundle_dir / COMPILED_CARD} is corrupt: {exc}") from exc
    if digest != _sha256(contents.model_file):
        raise CompiledModelError(f"{bundle_dir / COMPILED_LIBRARY} was compiled from another {MODEL_FILE}")
    if features != contents.feature_names:
        raise CompiledModelError(f"{bundle_dir / COMPILED_LIBRARY} was compiled for other features")
    here = (platform.system(), platform.machine())
    if built_for != here:
        raise CompiledModelError(
            f"{bundle_dir / COMPILED_LIBRARY} was built for {' '.join(built_for)}, this is {' '.join(here)}"
        )
    if rows.ndim != 2 or rows.shape[1] != len(features) or scores.shape != (rows.shape[0],):
        raise CompiledModelError(f"{bundle_dir / COMPILED_CARD}: probe rows and scores do not match")
    return CompiledContents(bundle_dir / COMPILED_LIBRARY, rows, scores)


def read_card(bundle_dir: Path) -> dict[str, Any]:
    """A bundle's model card (`model_card.json`), as training wrote it."""
    return _read_json(bundle_dir / CARD_FILE)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path} must hold a JSON object")
    return data
