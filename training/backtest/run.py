"""The backtest run: replay once, fit on the training period, score the test period, report.

Outputs are built in a temporary directory beside --out and renamed into place whole.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fraudwatch.adapters.model import load_model
from fraudwatch.domain.features import FEATURE_NAMES, MERCHANT_FEATURES
from training.backtest.config import BacktestConfig
from training.backtest.errors import BacktestError
from training.backtest.periods import check_time_order, fitting_split, plan_periods
from training.backtest.report import write_outputs
from training.bundle import swap_in
from training.features import compute_features, instants
from training.fit import fit
from training.io import LABEL, check_transactions
from training.score import score_rows
from training.steps import Steps
from training.train import predict, train_model

if TYPE_CHECKING:
    from training.distributed.engine import DaskEngine

OUTPUT_MARKERS = ("metrics.json", "report.md")
"""Files that make an existing --out recognisably an earlier backtest's, safe to replace."""


@dataclass(slots=True)
class BacktestRun:
    """What a backtest produced."""

    out: Path
    metrics: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def run_backtest(
    frame: pd.DataFrame,
    *,
    source: str,
    out: Path,
    config: BacktestConfig,
    checked: bool = True,
    steps: Steps | None = None,
    progress: bool = False,
    engine: DaskEngine | None = None,
) -> BacktestRun:
    """Replay, train, score and report; write `out` whole or not at all.

    `frame` is a labelled history as `training.io.read_transactions` returns it (`checked=False`
    checks it here). `engine` replays and trains on a Dask cluster instead of this machine.
    """
    steps = steps or Steps(total=step_count(config), say=lambda _: None)
    check_out(out)
    if not checked:
        check_transactions(frame, source=source, labelled=True)
    # The replay's own instants (a bad timestamp is named here), checked before the long replay.
    epochs, hours = instants(frame, source=source)
    check_time_order(epochs, frame["timestamp"], source)
    periods = plan_periods(
        epochs, config.train_days, config.gap_days, config.test_days, source, config.bounds
    )

    with steps.step("replay", f"replaying {len(frame):,} transactions (labels back after the delay)"):
        started = time.perf_counter()
        if engine is not None:
            matrix = engine.features(frame, source=source, label_delay=config.label_delay, at=(epochs, hours))
        else:
            matrix = compute_features(
                frame,
                source=source,
                check=False,
                label_delay=config.label_delay,
                progress=progress,
                at=(epochs, hours),
            )
        replay_seconds = time.perf_counter() - started
    split = fitting_split(matrix.epochs, periods, source)
    labels = frame[LABEL].to_numpy(dtype=bool)

    boosting = engine.boosting() if engine is not None else None
    staging = _staging(out)
    try:
        fitting, validation = int(split.train.sum()), int(split.validation.sum())
        fitted = fit(
            frame,
            matrix,
            split,
            source=f"backtest of {source}",
            bundle_dir=staging / "bundle",
            label_delay=config.label_delay,
            seed=config.seed,
            nthread=config.nthread,
            steps=steps,
            training=f"training with merchant risk on {fitting:,} rows, validating on {validation:,}"
            + (" (xgboost.dask, on the cluster)" if boosting is not None else ""),
            search=config.search,
            progress=progress,
            boosting=boosting,
        )
        without = None
        if config.compare:
            kept = tuple(name for name in FEATURE_NAMES if name not in MERCHANT_FEATURES)
            columns = [FEATURE_NAMES.index(name) for name in kept]
            with steps.step("train_without", "training the same model without the merchant risk features"):
                model_without = train_model(
                    matrix.values[:, columns],
                    labels,
                    split,
                    epochs=matrix.epochs,
                    gap=config.label_delay,
                    search=config.search,
                    seed=config.seed,
                    nthread=config.nthread,
                    progress=progress,
                    feature_names=kept,
                )
                without = predict(model_without.booster, matrix.values[split.test][:, columns])
        with steps.step("score", f"scoring {int(split.test.sum()):,} test transactions through the bundle"):
            lambda_model = load_model(fitted.bundle)
            scores = score_rows(lambda_model, matrix.values[split.test], progress)
            decisions = [lambda_model.thresholds.decide(score).value for score in scores.tolist()]
        with steps.step("report", f"writing scores, metrics, report and plots to {out}"):
            metrics = write_outputs(
                staging,
                frame=frame,
                matrix=matrix,
                split=split,
                periods=periods,
                scores=scores,
                baseline=fitted.baseline,
                without=without,
                decisions=decisions,
                model=lambda_model,
                thresholds=fitted.thresholds,
                booster=fitted.model.booster,
                source=source,
                config=config,
                replay_seconds=replay_seconds,
                seconds=dict(steps.seconds),
            )
            swap_in(staging, out.resolve())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BacktestRun(out, metrics, dict(steps.seconds))


def step_count(config: BacktestConfig) -> int:
    """The steps of a run: replay, train, evaluate, bundle, the model without merchant risk, score, report."""
    return 7 if config.compare else 6


def check_out(out: Path) -> None:
    """Refuse an --out that exists and is not an earlier backtest's output: it would be replaced whole."""
    if not out.exists():
        return
    if not out.is_dir():
        raise BacktestError(f"--out {out} is a file: give a directory")
    entries = {path.name for path in out.iterdir()}
    if entries and not all(name in entries for name in OUTPUT_MARKERS):
        raise BacktestError(
            f"--out {out} exists and is not a backtest's output (no {' and '.join(OUTPUT_MARKERS)}): "
            "it would be replaced whole, so give a new or an earlier backtest's directory"
        )


def _staging(out: Path) -> Path:
    """A new empty directory beside `out`, to build the outputs in."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would make the report private to its author
    return staging
