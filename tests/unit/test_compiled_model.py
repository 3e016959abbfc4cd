"""The compiled model: scores as XGBoost does, leaves xgboost unimported until reasons are needed, and
falls back to XGBoost scoring, saying why, whenever the bundle's library cannot be used."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fraudwatch.adapters.compiled as compiled
from fraudwatch.adapters.bundle import (
    COMPILED_CARD,
    COMPILED_FILES,
    COMPILED_LIBRARY,
    MODEL_FILE,
    save_bundle,
)
from fraudwatch.adapters.model import XGBoostModel, load_model
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.errors import BundleError
from infra.template import REPO_ROOT
from training.bundle import compile_bundle

TOLERANCE = 1e-6


def feature_rows(n: int, seed: int = 3) -> np.ndarray:
    """Rows over the tiny model's ranges and beyond, a fifth of the values missing (NaN)."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(0.5, 2.0, size=(n, len(FEATURE_NAMES))).astype(np.float32)
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}
    rows[:, col["amount"]] = rng.lognormal(3.5, 1.5, n)
    rows[:, col["amount_zscore"]] = rng.normal(0, 4, n)
    rows[:, col["velocity_1h"]] = rng.poisson(2.0, n)
    rows[rng.random(rows.shape) < 0.2] = np.nan
    return rows


@pytest.fixture(scope="module")
def deep_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deeper model than the tiny ones (60 trees of depth 6 on every feature), trained with missing
    values in every feature so that its trees send them both ways, compiled as training compiles."""
    import xgboost as xgb

    rows = feature_rows(8000, seed=11)
    rng = np.random.default_rng(12)
    weights = rng.normal(size=len(FEATURE_NAMES))
    signal = np.nan_to_num(rows, nan=-1.0) @ weights + np.isnan(rows[:, 0]) * 2.0
    labels = (signal + rng.normal(0, 1, len(signal)) > np.median(signal)).astype(int)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "eta": 0.3, "seed": 0, "nthread": 1},
        xgb.DMatrix(rows, label=labels, feature_names=list(FEATURE_NAMES)),
        num_boost_round=60,
    )
    path = tmp_path_factory.mktemp("deep")
    save_bundle(path, booster, {"flag": 0.5, "reject": 0.9}, {"version": "deep-1"})
    compile_bundle(path, booster)
    return path


@pytest.fixture
def bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A copy of the tests' compiled bundle, to break."""
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


def fallback_reason(caplog: pytest.LogCaptureFixture) -> str:
    [record] = [
        r for r in caplog.records if r.getMessage() == "compiled model unusable: scoring with XGBoost"
    ]
    return str(record.__dict__["reason"])


@pytest.mark.parametrize(
    ("fixture", "paths"), [("tiny_bundle", 100), ("tiny_challenger", 20), ("deep_bundle", 10_000)]
)
def test_the_compiled_model_scores_as_xgboost_does_missing_features_included(
    fixture: str, paths: int, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(fixture)
    model, reference = load_model(path), load_model(path, compiled=False)
    assert (model.scorer, reference.scorer) == ("compiled", "xgboost")
    rows = feature_rows(20_000)
    assert np.isnan(rows).any(axis=1).mean() > 0.9
    scores, expected = np.array(model.score(rows.tolist())), np.array(reference.score(rows.tolist()))
    assert len(np.unique(expected)) > paths  # the rows take many paths through the trees
    np.testing.assert_allclose(scores, expected, rtol=0, atol=TOLERANCE)


def test_a_batch_of_one_and_an_empty_batch_score_like_xgboost(tiny_bundle: Path) -> None:
    model, reference = load_model(tiny_bundle), load_model(tiny_bundle, compiled=False)
    row = feature_rows(1).tolist()
    assert model.score(row) == pytest.approx(reference.score(row), abs=TOLERANCE)
    assert model.score([]) == []


def test_a_column_major_float64_matrix_scores_as_its_rows_do(tiny_bundle: Path) -> None:
    rows = feature_rows(300)
    model = load_model(tiny_bundle)
    columnar = np.asfortranarray(rows, dtype=np.float64)  # columns contiguous, as a columnar batch keeps them
    assert model.score(columnar) == model.score(rows.tolist())  # type: ignore[arg-type]


def test_reasons_are_xgboosts_whichever_scores(tiny_bundle: Path) -> None:
    rows = feature_rows(50).tolist()
    model, reference = load_model(tiny_bundle), load_model(tiny_bundle, compiled=False)
    assert model.explain(rows, 3) == reference.explain(rows, 3)
    assert any(model.explain(rows, 3))


def test_scoring_imports_no_xgboost_until_the_first_explanation(tiny_bundle: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from fraudwatch.adapters.model import load_model\n"
        f"model = load_model(Path({str(tiny_bundle)!r}))\n"
        "scores = model.score([[0.5] * len(model.feature_names)])\n"
        "assert model.scorer == 'compiled' and 0 <= scores[0] <= 1\n"
        "assert 'xgboost' not in sys.modules, 'xgboost imported to score'\n"
        "assert 'scipy.sparse' not in sys.modules, 'scipy.sparse imported to score'\n"
        "model.explain([[0.5] * len(model.feature_names)], 3)\n"
        "assert 'xgboost' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO_ROOT
    )
    assert done.returncode == 0, done.stderr[-1500:]


@pytest.mark.parametrize("init", ["snap-start", "provisioned-concurrency"])
def test_an_init_ahead_of_requests_loads_the_booster_at_once(
    tiny_bundle: Path, init: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", init)
    model = load_model(tiny_bundle)
    assert model.scorer == "compiled"
    assert not isinstance(
        model._booster, Path
    )  # in the snapshot: the first alert after a restore loads nothing


def test_a_bundle_without_a_compiled_model_scores_with_xgboost_and_says_so(
    bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in COMPILED_FILES:
        (bundle / name).unlink()
    with caplog.at_level(logging.WARNING, logger="fraudwatch.model"):
        model = load_model(bundle)
    assert model.scorer == "xgboost"
    assert "no compiled model" in fallback_reason(caplog)
    assert 0 <= model.score(feature_rows(1).tolist())[0] <= 1


def test_a_library_that_does_not_load_falls_back_to_xgboost(
    bundle: Path, tiny_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (bundle / COMPILED_LIBRARY).write_bytes(b"\x7fELF not really a library")
    with caplog.at_level(logging.WARNING, logger="fraudwatch.model"):
        model = load_model(bundle)
    assert model.scorer == "xgboost"
    assert COMPILED_LIBRARY in fallback_reason(caplog)
    rows = feature_rows(200).tolist()
    assert model.score(rows) == load_model(tiny_bundle, compiled=False).score(rows)


def test_a_library_compiled_from_another_model_is_not_used(
    bundle: Path, tiny_challenger: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in COMPILED_FILES:
        shutil.copy(tiny_challenger / name, bundle / name)
    with caplog.at_level(logging.WARNING, logger="fraudwatch.model"):
        model = load_model(bundle)
    assert model.scorer == "xgboost"
    assert "another model.ubj" in fallback_reason(caplog)


def test_a_library_that_scores_the_probe_rows_otherwise_is_not_used(
    bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    card = json.loads((bundle / COMPILED_CARD).read_text())
    card["probe_scores"][7] += 1e-4
    (bundle / COMPILED_CARD).write_text(json.dumps(card))
    with caplog.at_level(logging.WARNING, logger="fraudwatch.model"):
        assert load_model(bundle).scorer == "xgboost"
    assert "differ from XGBoost's" in fallback_reason(caplog)


def test_a_library_built_for_another_platform_is_not_loaded(
    bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    card = json.loads((bundle / COMPILED_CARD).read_text())
    (bundle / COMPILED_CARD).write_text(json.dumps({**card, "machine": "arm64", "system": "Darwin"}))
    with caplog.at_level(logging.WARNING, logger="fraudwatch.model"):
        assert load_model(bundle).scorer == "xgboost"
    assert "built for Darwin arm64" in fallback_reason(caplog)


def test_without_the_tl2cgen_runtime_it_scores_with_xgboost(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(compiled, "_runtime", None)
    monkeypatch.setattr(compiled, "RUNTIME_PACKAGE", "tl2cgen_not_installed")
    with caplog.at_level(logging.WARNING, logger="fraudwatch.model"):
        assert load_model(tiny_bundle).scorer == "xgboost"
    assert "runtime is not installed" in fallback_reason(caplog)


def test_a_corrupt_model_file_is_still_refused_at_load(bundle: Path) -> None:
    (bundle / MODEL_FILE).write_bytes(b"{not a model")
    with pytest.raises(BundleError, match="corrupt"):
        load_model(bundle)


def test_a_model_trained_on_other_feature_names_is_still_refused_at_load(tmp_path: Path) -> None:
    import xgboost as xgb

    rows = feature_rows(500)
    other_names = [f"other_{name}" for name in FEATURE_NAMES]
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
        xgb.DMatrix(rows, label=(rows[:, 0] > 1).astype(int), feature_names=other_names),
        num_boost_round=3,
    )
    save_bundle(tmp_path, booster, {"flag": 0.5, "reject": 0.9}, {"version": "renamed-1"})
    compile_bundle(tmp_path, booster)
    with pytest.raises(BundleError, match="features differ"):
        load_model(tmp_path)


def test_rows_of_the_wrong_width_are_refused(tiny_bundle: Path) -> None:
    model = load_model(tiny_bundle)
    assert isinstance(model, XGBoostModel)
    with pytest.raises(ValueError, match="features"):
        model.score([[0.5] * (len(FEATURE_NAMES) - 1)])
