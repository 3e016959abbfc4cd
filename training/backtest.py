"""`fraudwatch backtest`: replay a labelled history as production would have seen it, train, and score.

The periods start at the UTC midnight of the file's first transaction: a training period, a gap (its
labels are not yet back when the test starts; neither trained on nor scored), then the test period.
The whole file is replayed once, in time order, through the Lambda's own profile updates and features
(`training.features.compute_features`) with each fraud label fed back a delay after its transaction;
features do not depend on the model, so one replay serves training and test. The model trained on the
training period is written as a bundle and loaded by the Lambda's model adapter, whose scores and
decisions are the backtest's. A second model, trained identically without the merchant risk features,
shows what they add. Outputs are built in a temporary directory and renamed into place whole.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudwatch.domain.features import DAY
from fraudwatch.domain.label import DEFAULT_LABEL_DELAY
from fraudwatch.errors import FraudwatchError
from training.generate import at_least
from training.pipeline import DEFAULT_SEED, Steps, add_label_delay_option, score_rows

if TYPE_CHECKING:
    import pandas as pd

    from training.features import FeatureMatrix
    from training.train import TimeSplit

DEFAULT_OUT = Path("backtest")
OUTPUT_MARKERS = ("metrics.json", "report.md")
"""Files that make an existing --out recognisably an earlier backtest's, safe to replace."""


class BacktestError(FraudwatchError):
    """The backtest cannot run as asked: periods that do not fit the file, or an --out it must not replace."""


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """What to backtest and how (the command line's options)."""

    train_days: int = 35
    gap_days: int = 7
    test_days: int | None = None
    """None: the test period runs to the end of the file."""
    label_delay: float = DEFAULT_LABEL_DELAY
    """Seconds after its transaction that a fraud label becomes known."""
    top_k: int = 50
    compare: bool = True
    seed: int = DEFAULT_SEED
    nthread: int = 2
    csv: bool = False


@dataclass(slots=True)
class BacktestRun:
    """What a backtest produced."""

    out: Path
    metrics: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `backtest`."""
    parser = subparsers.add_parser(
        "backtest",
        help="replay a labelled history as production would have, train on its past, score its future",
        description=(
            "Backtest on a labelled transaction file (the contract's columns plus is_fraud, sorted by "
            "timestamp): replay it in time order through the Lambda's profile updates and features, "
            "feeding each fraud label back after a delay; train on the training period; score the test "
            "period with the same model bundle and decisions the Lambda uses; report ROC AUC, average "
            "precision, recall and precision at 1%% FPR, recall per fraud pattern and the daily top-k "
            "precision per card, with and without the merchant risk features. Periods start at the UTC "
            "midnight of the file's first transaction: training, then a gap, then the test."
        ),
    )
    parser.add_argument(
        "file", type=Path, metavar="FILE", help="a labelled transaction file (.csv or .parquet)"
    )
    parser.add_argument(
        "--train-days", type=at_least(1), default=35, metavar="DAYS", help="days of training (default 35)"
    )
    parser.add_argument(
        "--gap-days",
        type=at_least(0),
        default=7,
        metavar="DAYS",
        help="days after training that are neither trained on nor scored, as labels are still coming back "
        "when a model ships (default 7)",
    )
    parser.add_argument(
        "--test-days",
        type=at_least(1),
        metavar="DAYS",
        help="days of test after the gap (default: the rest of the file)",
    )
    add_label_delay_option(parser)
    parser.add_argument(
        "--top-k",
        type=at_least(1),
        default=50,
        metavar="K",
        help="cards an analyst reviews per day, for the daily top-k precision (default 50)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output directory, replaced whole when the run succeeds (default {DEFAULT_OUT}/)",
    )
    parser.add_argument(
        "--no-compare",
        dest="compare",
        action="store_false",
        help="skip the second model trained without the merchant risk features",
    )
    parser.add_argument("--csv", action="store_true", help="write scores.csv instead of scores.parquet")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--threads", type=at_least(1), default=2, help="XGBoost threads (default 2: these machines' cores)"
    )
    parser.set_defaults(run=run_command)


def run_command(args: argparse.Namespace) -> int:
    """`fraudwatch backtest`: exit 2 on a named input error, with nothing written."""
    from training.io import read_transactions

    config = BacktestConfig(
        train_days=args.train_days,
        gap_days=args.gap_days,
        test_days=args.test_days,
        label_delay=args.label_delay_days * DAY,
        top_k=args.top_k,
        compare=args.compare,
        seed=args.seed,
        nthread=args.threads,
        csv=args.csv,
    )
    steps = Steps(total=6 if config.compare else 5, say=lambda line: print(line, file=sys.stderr))
    started = time.perf_counter()
    try:
        check_out(args.out)
        with steps.step("read", f"reading {args.file}"):
            frame = read_transactions(args.file, labelled=True)
        run = run_backtest(
            frame, source=str(args.file), out=args.out, config=config, steps=steps, progress=True
        )
    except FraudwatchError as exc:
        print(f"fraudwatch backtest: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fraudwatch backtest: error: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    print(summary(run, time.perf_counter() - started))
    return 0


def run_backtest(
    frame: pd.DataFrame,
    *,
    source: str,
    out: Path,
    config: BacktestConfig,
    checked: bool = True,
    steps: Steps | None = None,
    progress: bool = False,
) -> BacktestRun:
    """Replay, train, score and report; write `out` whole or not at all.

    `frame` is a labelled history as `training.io.read_transactions` returns it (`checked=False`
    checks it here).
    """
    from fraudwatch.adapters.model import load_model
    from fraudwatch.domain.features import FEATURE_NAMES, MERCHANT_FEATURES
    from training._backtest_periods import check_time_order, fitting_split, plan_periods
    from training._backtest_report import write_outputs
    from training.bundle import swap_in
    from training.features import compute_features, instants
    from training.io import LABEL, check_transactions
    from training.train import choose_thresholds, predict, train_model

    steps = steps or Steps(total=6 if config.compare else 5, say=lambda _: None)
    check_out(out)
    if not checked:
        check_transactions(frame, source=source, labelled=True)
    # The replay's own instants (a bad timestamp is named here), checked before the long replay.
    epochs, hours = instants(frame, source=source)
    check_time_order(epochs, frame["timestamp"], source)
    periods = plan_periods(epochs, config.train_days, config.gap_days, config.test_days, source)

    with steps.step("replay", f"replaying {len(frame):,} transactions (labels back after the delay)"):
        started = time.perf_counter()
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

    fit, validation = int(split.train.sum()), int(split.validation.sum())
    with steps.step("train", f"training with merchant risk on {fit:,} rows, validating on {validation:,}"):
        model = train_model(
            matrix.values, labels, split, seed=config.seed, nthread=config.nthread, progress=progress
        )
        thresholds = choose_thresholds(model.validation_scores, labels[split.validation])
    without = None
    if config.compare:
        kept = tuple(name for name in FEATURE_NAMES if name not in MERCHANT_FEATURES)
        columns = [FEATURE_NAMES.index(name) for name in kept]
        with steps.step("train_without", "training the same model without the merchant risk features"):
            model_without = train_model(
                matrix.values[:, columns],
                labels,
                split,
                seed=config.seed,
                nthread=config.nthread,
                progress=progress,
                feature_names=kept,
            )
            without = predict(model_without.booster, matrix.values[split.test][:, columns])

    staging = _staging(out)
    try:
        with steps.step("score", f"scoring {int(split.test.sum()):,} test transactions through the bundle"):
            bundle = _write_bundle(
                staging / "bundle", frame, matrix, split, model, thresholds, source, config
            )
            lambda_model = load_model(bundle)
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
                without=without,
                decisions=decisions,
                model=lambda_model,
                thresholds=thresholds,
                booster=model.booster,
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


def _write_bundle(
    directory: Path,
    frame: pd.DataFrame,
    matrix: FeatureMatrix,
    split: TimeSplit,
    model: Any,
    thresholds: Any,
    source: str,
    config: BacktestConfig,
) -> Path:
    """The trained model as the Lambda's bundle, its card carrying the test period's figures."""
    from training.bundle import model_version, write_bundle
    from training.evaluate import evaluate
    from training.io import LABEL, PATTERN
    from training.pipeline import model_card, thresholds_file
    from training.train import predict

    labels = frame[LABEL].to_numpy(dtype=bool)
    patterns = frame[PATTERN].to_numpy(dtype=str)[split.test] if PATTERN in frame.columns else None
    test_scores = predict(model.booster, matrix.values[split.test])
    evaluation = evaluate(model.booster, test_scores, labels[split.test], patterns, thresholds)
    trained_at = datetime.now(UTC).replace(microsecond=0)
    version = model_version(model.booster, trained_at)
    card = model_card(
        version,
        trained_at,
        f"backtest of {source}",
        frame,
        matrix.epochs,
        split,
        model,
        thresholds,
        evaluation,
        config.label_delay,
    )
    return write_bundle(directory, model.booster, thresholds_file(thresholds), card)


def _staging(out: Path) -> Path:
    """A new empty directory beside `out`, to build the outputs in."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would make the report private to its author
    return staging


def summary(run: BacktestRun, seconds: float) -> str:
    """The final lines: the test period, the replay speed, the models side by side, where the outputs are."""
    metrics = run.metrics
    models, replay, test = metrics["models"], metrics["replay"], metrics["periods"]["test"]
    lines = [
        f"backtest: {test['rows']:,} test transactions ({test['frauds']:,} fraud) scored in {seconds:.1f} s; "
        f"replay {replay['tx_per_second']:,.0f} tx/s"
    ]
    for name, figures in models.items():
        recall = figures["pattern_recall"].get("compromised_merchant")
        lines.append(
            f"  {name.replace('_', ' ')}: ROC AUC {figures['roc_auc']:.4f}, "
            f"AP {figures['average_precision']:.4f}, "
            f"recall at 1% FPR {figures['at_fpr']['recall']:.1%}"
            + (f" (compromised_merchant {recall:.1%})" if recall is not None else "")
            + f", daily top-{metrics['top_k']} precision {figures['mean_top_k_precision']:.1%}"
        )
    lines.append(f"  report: {run.out / 'report.md'}")
    return "\n".join(lines)
