"""The model bundle's format: the one place that names its files and reads and writes them.

A bundle is a directory: `model.ubj` (the XGBoost Booster), `features.json` (the ordered feature
names), `thresholds.json` (flag and reject scores, and whatever else training records about them)
and `model_card.json` (version, data, metrics, libraries, and the `reference` distribution of
every feature and of the score that drift is measured against: `fraudwatch.domain.drift`). Training
adds `model_card.md` for people; the Lambda never reads it. `save_bundle` writes the files,
`read_bundle` reads them back and refuses a bundle that is incomplete or made for other features
than this code's; loading the Booster itself is the model adapter's (`fraudwatch.adapters.model`).
Nothing here imports xgboost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudwatch.domain.decision import Thresholds
from fraudwatch.domain.drift import Reference
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.errors import BundleError, StaleBundleError

if TYPE_CHECKING:
    import xgboost as xgb

MODEL_FILE = "model.ubj"
FEATURES_FILE = "features.json"
THRESHOLDS_FILE = "thresholds.json"
CARD_FILE = "model_card.json"
CARD_MARKDOWN = "model_card.md"
BUNDLE_FILES = (MODEL_FILE, FEATURES_FILE, THRESHOLDS_FILE, CARD_FILE)
"""What the Lambda reads; a bundle without one of them is refused."""


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


def read_card(bundle_dir: Path) -> dict[str, Any]:
    """A bundle's model card (`model_card.json`), as training wrote it."""
    return _read_json(bundle_dir / CARD_FILE)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path} must hold a JSON object")
    return data
