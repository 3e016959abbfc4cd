"""The model bundle: what the Lambda's model layer carries, written so it is never half there.

A bundle is a directory (by default `layers/model/bundle/`) in the format that
`fraudwatch.adapters.model` owns (`save_bundle` writes it, `load_model` reads it back and refuses one
whose features differ from the code's); training adds the model card for people (`model_card.md`) and
writes the whole in a staging directory swapped in at once. Then it compiles the model to native code
(`compile_bundle`: treelite reads `model.ubj`, tl2cgen generates C, gcc builds `model.so`), which the
Lambda scores with; a machine without the compiler writes the bundle without it (the Lambda scores
with XGBoost then), and says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from fraudwatch.adapters.bundle import (
    CARD_MARKDOWN,
    COMPILED_LIBRARY,
    MODEL_FILE,
    read_bundle,
    save_bundle,
    save_compiled,
)
from training.selection import selection_lines

TOOLCHAIN = "gcc"
"""The C compiler tl2cgen drives. Lambda's x86_64 python3.12 runtime is Amazon Linux 2023 (glibc 2.34):
gcc's generic x86-64 code, linked against libc and libm only, runs there (docs/models.md, "The compiled
model")."""
PROBE_ROWS = 64

logger = logging.getLogger("training.bundle")


def model_version(booster: xgb.Booster, trained_at: datetime) -> str:
    """A version that sorts by training time and names the exact model: `20261130-201503-1a2b3c4d`."""
    digest = hashlib.sha256(bytes(booster.save_raw(raw_format="ubj"))).hexdigest()[:8]
    return f"{trained_at:%Y%m%d-%H%M%S}-{digest}"


def git_state() -> tuple[str | None, bool | None]:
    """The working tree's commit and whether tracked files have changed since it; None outside git."""
    git = shutil.which("git")
    if git is None:
        return None, None
    try:
        commit = _run([git, "rev-parse", "HEAD"])
        changes = _run([git, "status", "--porcelain", "--untracked-files=no"])
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(changes)


def _run(command: list[str]) -> str:
    # A fixed command on the resolved git executable: no untrusted input reaches it.
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=10)  # noqa: S603
    return done.stdout.strip()


def libraries() -> dict[str, str]:
    """Versions of what trained the model (the layer must serve it with the same xgboost)."""
    return {"xgboost": xgb.__version__, "numpy": np.__version__, "python": platform.python_version()}


def write_bundle(
    bundle_dir: Path,
    booster: xgb.Booster,
    thresholds: dict[str, Any],
    card: dict[str, Any],
    *,
    compile_model: bool = True,
) -> Path:
    """Write the bundle, with its compiled model unless `compile_model` is false, into a temporary
    directory beside `bundle_dir`, then swap it in."""
    bundle_dir = bundle_dir.resolve()
    bundle_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle_dir.name}.new-", dir=bundle_dir.parent))
    try:
        save_bundle(staging, booster, thresholds, card)
        (staging / CARD_MARKDOWN).write_text(render_card(card))
        if compile_model:
            try:
                compile_bundle(staging, booster)
            except CompileError as exc:
                logger.warning(
                    "the bundle has no compiled model: the Lambda will score with XGBoost (%s)", exc
                )
        swap_in(staging, bundle_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return bundle_dir


class CompileError(Exception):
    """The model could not be compiled here (no compiler, or the compiler failed)."""


def compile_bundle(bundle_dir: Path, booster: xgb.Booster) -> None:
    """Compile the bundle's `model.ubj` (the Booster `booster` wrote) into `model.so`, and add it to the
    bundle with probe rows and XGBoost's scores of them, which the library must reproduce when loaded."""
    import tl2cgen
    import treelite

    if shutil.which(TOOLCHAIN) is None:
        raise CompileError(f"no {TOOLCHAIN} on the PATH")
    # the file, not the Booster in memory: the library is what model.ubj's digest names
    model = treelite.frontend.load_xgboost_model(bundle_dir / MODEL_FILE)
    jobs = os.cpu_count() or 1
    rows = probe_rows(booster)
    with tempfile.TemporaryDirectory(prefix="fraudwatch-compile-") as scratch:
        library = Path(scratch) / COMPILED_LIBRARY
        with _native_output_logged():
            try:
                tl2cgen.export_lib(
                    model, TOOLCHAIN, library, params={"parallel_comp": jobs}, nthread=jobs, verbose=False
                )
            except (OSError, tl2cgen.TL2cgenError) as exc:
                raise CompileError(f"{TOOLCHAIN} could not build the model's library: {exc}") from exc
        save_compiled(
            bundle_dir,
            library,
            # the Booster's own names when it has them: a bundle whose features.json differs from them is
            # then refused at load, as the Booster itself would be, not at its first explanation
            feature_names=tuple(booster.feature_names or read_bundle(bundle_dir).feature_names),
            probe_rows=rows,
            probe_scores=booster.inplace_predict(rows, validate_features=False),
            built_with={
                "treelite": treelite.__version__,
                "tl2cgen": tl2cgen.__version__,
                "compiler": _compiler_version(),
            },
        )


def probe_rows(booster: xgb.Booster, rows: int = PROBE_ROWS, seed: int = 0) -> np.ndarray[Any, Any]:
    """Rows that walk the model's branches: each feature just below, at or just above one of its split
    thresholds, or missing (NaN) one time in ten; float32, as scoring sends them."""
    rng = np.random.default_rng(seed)
    trees = booster.trees_to_dataframe()
    splits = trees[trees["Feature"] != "Leaf"]
    names = booster.feature_names or [f"f{i}" for i in range(booster.num_features())]
    matrix = np.zeros((rows, len(names)), dtype=np.float32)
    for column, name in enumerate(names):
        thresholds = splits.loc[splits["Feature"] == name, "Split"].to_numpy(dtype=np.float32)
        picked = rng.choice(thresholds, rows) if len(thresholds) else rng.normal(size=rows)
        nudge = rng.choice(np.array([-1e-3, 0.0, 1e-3]), rows)
        matrix[:, column] = picked + nudge * np.maximum(np.abs(picked), 1.0)
        matrix[rng.random(rows) < 0.1, column] = np.nan
    return matrix


@contextlib.contextmanager
def _native_output_logged() -> Iterator[None]:
    """Log what tl2cgen writes while compiling instead of letting it reach the terminal: its log lines
    (through print) and, on stderr, treelite's note that the model file was written by a newer treelite
    (4.8) than the one built into tl2cgen 1.0 (4.1), which reads it (the probe rows check the result)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            said = printed.getvalue() + captured.read().decode(errors="replace")
            if said.strip():
                logger.info("tl2cgen: %s", said.strip())


def _compiler_version() -> str:
    try:
        return _run([TOOLCHAIN, "--version"]).splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return TOOLCHAIN


def swap_in(staging: Path, bundle_dir: Path) -> None:
    """Replace `bundle_dir` by `staging` with renames: a reader sees the old bundle or the new one.

    Between the two renames the path is briefly absent (a directory cannot be replaced in one rename);
    a reader then fails with "bundle missing" and retries, never loads a mix of two bundles.
    """
    retired = None
    if bundle_dir.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{bundle_dir.name}.old-", dir=bundle_dir.parent))
        bundle_dir.rename(retired / bundle_dir.name)
    staging.rename(bundle_dir)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def render_card(card: dict[str, Any]) -> str:
    """The human-readable model card."""
    data, test = card["data"], card["metrics"]["test"]
    thresholds = card["thresholds"]
    lines = [
        f"# Model card: {card['version']}",
        "",
        "Card-fraud score for one transaction given the user's profile before it "
        "(XGBoost, binary:logistic). Scores at or above the REJECTED threshold are rejected, at or above "
        "the FLAGGED threshold sent for review.",
        "",
        f"- trained at: {card['trained_at']}",
        f"- git commit: {card['git_commit'] or 'unknown'}"
        + (" (with uncommitted changes)" if card.get("git_dirty") else ""),
        f"- libraries: {', '.join(f'{k} {v}' for k, v in card['libraries'].items())}",
        f"- features ({len(card['model']['features'])}): {', '.join(card['model']['features'])}",
        "",
        "## Data",
        "",
        f"- source: {data['source']}",
        f"- {data['rows']:,} transactions, {data['frauds']:,} fraud ({data['fraud_rate']:.2%}), "
        f"{data['users']:,} users",
        *[
            f"- {name}: {p['start']} to {p['end']}, {p['rows']:,} rows, {p['frauds']:,} fraud"
            for name, p in data["periods"].items()
        ],
        "",
        "## Thresholds (chosen on the validation period)",
        "",
        f"- FLAGGED >= {thresholds['flag']:.6f}, REJECTED >= {thresholds['reject']:.6f}",
        *[
            f"- on validation, {name}: precision {point['precision']:.3f}, recall {point['recall']:.3f}, "
            f"{point['alert_share']:.2%} of transactions"
            for name, point in (
                ("FLAGGED", thresholds["validation"]["flag"]),
                ("REJECTED", thresholds["validation"]["reject"]),
            )
        ],
        f"- rule: {thresholds['rule']}",
        *[f"- note: {note}" for note in thresholds["notes"]],
        "- deploy-time override: FLAG_THRESHOLD / REJECT_THRESHOLD",
        "",
        "## Test period",
        "",
        f"- ROC AUC {test['roc_auc']:.4f}, average precision {test['average_precision']:.4f}",
        f"- at FLAGGED: precision {_figure(test['at_flag']['precision'])}, "
        f"recall {test['at_flag']['recall']:.3f}, "
        f"{test['at_flag']['alert_share']:.2%} of transactions alerted",
        f"- at REJECTED: precision {_figure(test['at_reject']['precision'])}, "
        f"recall {test['at_reject']['recall']:.3f}",
        "- recall per fraud pattern:",
        *[
            f"  - {p['pattern']}: {p['flagged_or_rejected']:.1%} flagged or rejected, "
            f"{p['rejected']:.1%} rejected"
            for p in test["patterns"]
        ],
        "",
        "## Model selection",
        "",
        *selection_lines(card["selection"]),
        "",
        "## Limits",
        "",
        "- Trained on the data above only; synthetic history teaches synthetic patterns.",
        "- Scores are not calibrated probabilities when the positive class is weighted.",
        "",
    ]
    return "\n".join(lines)


def _figure(value: float | None) -> str:
    return "n/a (no alerts)" if value is None else f"{value:.3f}"
