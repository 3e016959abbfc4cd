"""The demo's bundle check: no bundle or a stale one is retrained, a corrupt one stops the demo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fraudwatch.adapters.bundle import FEATURES_FILE, MODEL_FILE
from fraudwatch.errors import BundleError
from infra import embedded


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch, tiny_bundle: Path) -> list[str]:
    """Stand in for `fraudwatch train`: copy the tiny real bundle in, and record why it was called."""
    reasons: list[str] = []

    def train(bundle_dir: Path, why: str) -> None:
        reasons.append(why)
        shutil.copytree(tiny_bundle, bundle_dir, dirs_exist_ok=True)

    monkeypatch.setattr(embedded, "_train", train)
    return reasons


def test_a_missing_bundle_is_trained(tmp_path: Path, trainings: list[str]) -> None:
    embedded.ensure_bundle(tmp_path / "bundle")
    assert trainings == [f"no model bundle in {tmp_path / 'bundle'}"]


def test_a_bundle_for_other_features_is_retrained(
    tmp_path: Path, tiny_bundle: Path, trainings: list[str]
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / FEATURES_FILE).write_text(json.dumps({"feature_names": ["amount", "velocity_1h"]}))
    embedded.ensure_bundle(bundle)
    assert len(trainings) == 1
    assert "other features" in trainings[0]


def test_a_sound_bundle_is_kept(tmp_path: Path, tiny_bundle: Path, trainings: list[str]) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    embedded.ensure_bundle(bundle)
    assert trainings == []


def test_a_corrupt_bundle_stops_and_is_not_retrained(
    tmp_path: Path, tiny_bundle: Path, trainings: list[str]
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / MODEL_FILE).write_bytes(b"not a model")
    with pytest.raises(BundleError, match="corrupt"):
        embedded.ensure_bundle(bundle)
    assert trainings == []
