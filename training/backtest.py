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
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fraudwatch.domain.label import DEFAULT_LABEL_DELAY
from fraudwatch.errors import FraudwatchError
from training.generate import _at_least
from training.pipeline import DEFAULT_SEED, SCORE_CHUNK, Steps, add_label_delay_option

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from training.features import FeatureMatrix
    from training.train import TimeSplit

DAY = 86400.0
FIT_SHARE = 0.80
"""Of the training period's transactions, the earliest share fits the model; the rest validates."""
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


@dataclass(frozen=True, slots=True)
class Periods:
    """The instants (epoch seconds) that bound the periods; the test period may run to infinity."""

    origin: float
    train_end: float
    test_start: float
    test_end: float

    def describe(self) -> dict[str, tuple[float, float]]:
        """Each period's [start, end), by name."""
        return {
            "training": (self.origin, self.train_end),
            "gap": (self.train_end, self.test_start),
            "test": (self.test_start, self.test_end),
        }


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
        "--train-days", type=_at_least(1), default=35, metavar="DAYS", help="days of training (default 35)"
    )
    parser.add_argument(
        "--gap-days",
        type=_at_least(0),
        default=7,
        metavar="DAYS",
        help="days after training that are neither trained on nor scored, as labels are still coming back "
        "when a model ships (default 7)",
    )
    parser.add_argument(
        "--test-days",
        type=_at_least(1),
        metavar="DAYS",
        help="days of test after the gap (default: the rest of the file)",
    )
    add_label_delay_option(parser)
    parser.add_argument(
        "--top-k",
        type=_at_least(1),
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
        "--threads", type=_at_least(1), default=2, help="XGBoost threads (default 2: these machines' cores)"
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
    from training.features import compute_features
    from training.io import LABEL, check_transactions
    from training.train import choose_thresholds, predict, train_model

    steps = steps or Steps(total=6 if config.compare else 5, say=lambda _: None)
    check_out(out)
    if not checked:
        check_transactions(frame, source=source, labelled=True)
    # Named before the replay, from a vectorised parse; the replay's own instants are checked again after.
    early = _quick_epochs(frame)
    check_time_order(early, frame["timestamp"], source)
    plan_periods(early, config, source)

    with steps.step("replay", f"replaying {len(frame):,} transactions (labels back after the delay)"):
        started = time.perf_counter()
        matrix = compute_features(
            frame, source=source, check=False, label_delay=config.label_delay, progress=progress
        )
        replay_seconds = time.perf_counter() - started
    check_time_order(matrix.epochs, frame["timestamp"], source)
    periods = plan_periods(matrix.epochs, config, source)
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
            metrics = _write_outputs(
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
            _swap(staging, out)
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


def _quick_epochs(frame: pd.DataFrame) -> np.ndarray:
    """Epoch seconds of the timestamps pandas can place; NaN for others (the replay names the bad ones)."""
    import pandas as pd

    instants = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601", errors="coerce")
    micros = instants.dt.as_unit("us").astype("int64").to_numpy().astype("float64")
    micros[instants.isna().to_numpy()] = math.nan
    return micros / 1e6


def check_time_order(epochs: np.ndarray, timestamps: pd.Series, source: str) -> None:
    """Raise DataFileError at the first row earlier than the one before it (rows 1-based, NaN skipped)."""
    import numpy as np

    from training.io import DataFileError

    rows = np.flatnonzero(~np.isnan(epochs))
    known = epochs[rows]
    earlier = np.flatnonzero(known[1:] < known[:-1])
    if len(earlier):
        row, previous = int(rows[earlier[0] + 1]), int(rows[earlier[0]])
        raise DataFileError(
            f"{source}: row {row + 1}: timestamp {timestamps.iloc[row]!r} is earlier than row "
            f"{previous + 1}'s {timestamps.iloc[previous]!r}: sort the file by timestamp (by instant)"
        )


def plan_periods(epochs: np.ndarray, config: BacktestConfig, source: str) -> Periods:
    """The periods' bounds, checked against the file's span; raise BacktestError when they do not fit."""
    import numpy as np

    first, last = float(np.nanmin(epochs)), float(np.nanmax(epochs))
    origin = math.floor(first / DAY) * DAY
    train_end = origin + config.train_days * DAY
    test_start = train_end + config.gap_days * DAY
    end_of_file = math.floor(last / DAY) * DAY + DAY
    span = f"the file runs from {_iso(first)} to {_iso(last)} ({(end_of_file - origin) / DAY:.0f} UTC days)"
    if test_start > last:
        raise BacktestError(
            f"{source}: the test period would start at {_iso(test_start)} "
            f"({config.train_days} training and {config.gap_days} gap days from {_iso(origin)}), "
            f"after the last transaction: {span}"
        )
    test_end = math.inf if config.test_days is None else test_start + config.test_days * DAY
    if config.test_days is not None and test_end > end_of_file:
        raise BacktestError(
            f"{source}: the test period of {config.test_days} days would end at {_iso(test_end)}, "
            f"after the file's last day: {span}"
        )
    test_rows = int(((epochs >= test_start) & (epochs < test_end)).sum())
    if test_rows == 0:
        raise BacktestError(
            f"{source}: the test period from {_iso(test_start)} to {_iso(test_end)} has no transactions"
        )
    return Periods(origin, train_end, test_start, test_end)


def fitting_split(epochs: np.ndarray, periods: Periods, source: str) -> TimeSplit:
    """The training period's earliest FIT_SHARE of rows fit, the rest validate; the test period tests."""
    import numpy as np

    from training.train import TimeSplit

    training = (epochs >= periods.origin) & (epochs < periods.train_end)
    ordered = np.sort(epochs[training])
    cut = float(ordered[min(int(len(ordered) * FIT_SHARE), len(ordered) - 1)])
    fit, validation = training & (epochs < cut), training & (epochs >= cut)
    if not fit.any():
        raise BacktestError(
            f"{source}: the training period's {len(ordered):,} transactions are too few to split"
        )
    test = (epochs >= periods.test_start) & (epochs < periods.test_end)
    return TimeSplit(fit, validation, test, cut, periods.test_start)


def score_rows(model: Any, values: np.ndarray, progress: bool = False) -> np.ndarray:
    """The model adapter's scores of feature rows, a chunk per call as the Lambda scores a batch."""
    import numpy as np
    from tqdm import tqdm

    scores: list[float] = []
    with tqdm(total=len(values), desc="scoring", unit="tx", unit_scale=True, disable=not progress) as bar:
        for start in range(0, len(values), SCORE_CHUNK):
            chunk = values[start : start + SCORE_CHUNK]
            scores.extend(model.score(cast("Sequence[Sequence[float]]", chunk)))
            bar.update(len(chunk))
    return np.asarray(scores, dtype=np.float64)


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


def _write_outputs(
    staging: Path,
    *,
    frame: pd.DataFrame,
    matrix: FeatureMatrix,
    split: TimeSplit,
    periods: Periods,
    scores: np.ndarray,
    without: np.ndarray | None,
    decisions: list[str],
    model: Any,
    thresholds: Any,
    booster: Any,
    source: str,
    config: BacktestConfig,
    replay_seconds: float,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """scores.<parquet|csv>, metrics.json, report.md and the plots; return the metrics.

    `model` is the loaded bundle that scored the test period; `thresholds` the choice it was written with.
    """
    from dataclasses import asdict

    from fraudwatch.domain.features import MERCHANT_FEATURES
    from training import _backtest_report as report
    from training.evaluate import evaluate, importance
    from training.io import LABEL, PATTERN
    from training.pipeline import write_table

    test = split.test
    labels = frame[LABEL].to_numpy(dtype=bool)
    tested = frame.loc[test, ["transaction_id", "user_id", "merchant_id", "timestamp"]].reset_index(drop=True)
    tested["score"] = scores
    tested["decision"] = decisions
    tested[LABEL] = labels[test]
    patterns = None
    if PATTERN in frame.columns:
        patterns = frame[PATTERN].to_numpy(dtype=str)[test]
        tested[PATTERN] = patterns
    if without is not None:
        tested["score_without_merchant_risk"] = without
    write_table(tested, staging / ("scores.csv" if config.csv else "scores.parquet"))

    epochs, cards, y = matrix.epochs[test], frame["user_id"].to_numpy(dtype=str)[test], labels[test]
    results = {report.WITH: report.figures(scores, y, patterns, epochs, cards, config.top_k)}
    all_scores = {report.WITH: scores}
    if without is not None:
        results[report.WITHOUT] = report.figures(without, y, patterns, epochs, cards, config.top_k)
        all_scores[report.WITHOUT] = without
    # The bundle's decisions against truth, at its thresholds, from the adapter's scores.
    evaluation = evaluate(booster, scores, y, patterns, thresholds)
    gain = importance(booster)
    metrics: dict[str, Any] = {
        "data": {
            "source": source,
            "rows": len(frame),
            "frauds": int(labels.sum()),
            "label_delay_days": config.label_delay / DAY,
        },
        "periods": _periods(periods, split, matrix.epochs, labels),
        "replay": {
            "transactions": len(frame),
            "seconds": replay_seconds,
            "tx_per_second": len(frame) / replay_seconds if replay_seconds > 0 else math.nan,
        },
        "model": {
            "version": model.version,
            "flag": model.thresholds.flag,
            "reject": model.thresholds.reject,
            "merchant_gain": {name: gain[name] for name in MERCHANT_FEATURES},
        },
        "test_frauds_by_pattern": (
            {p: int((y & (patterns == p)).sum()) for p in sorted(set(patterns[y].tolist()))}
            if patterns is not None
            else {}
        ),
        "top_k": config.top_k,
        "false_positive_rate": report.FALSE_POSITIVE_RATE,
        "models": {name: figure.to_dict() for name, figure in results.items()},
        "decisions": {
            "confusion": evaluation.confusion,
            "at_flag": asdict(evaluation.at_flag),
            "at_reject": asdict(evaluation.at_reject),
        },
        "seed": config.seed,
        "seconds": seconds,
    }
    report.write_report(
        staging, metrics=metrics, results=results, evaluation=evaluation, scores=all_scores, labels=y
    )
    return metrics


def _periods(periods: Periods, split: TimeSplit, epochs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Each period's bounds, rows and frauds; the training period also as its fitting and validation parts."""
    bounds = periods.describe()
    last = float(epochs.max())
    out = {}
    for name, (start, end) in bounds.items():
        mask = (epochs >= start) & (epochs < end)
        out[name] = _period(start, min(end, math.floor(last / DAY) * DAY + DAY), mask, labels)
    out["fitting"] = _period(periods.origin, split.validation_start, split.train, labels)
    out["validation"] = _period(split.validation_start, periods.train_end, split.validation, labels)
    order = ("training", "fitting", "validation", "gap", "test")
    return {name: out[name] for name in order}


def _period(start: float, end: float, mask: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    return {
        "start": _iso(start),
        "end": _iso(end),
        "rows": int(mask.sum()),
        "frauds": int(labels[mask].sum()),
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if math.isfinite(epoch) else "the end of the file"


def _staging(out: Path) -> Path:
    """A new empty directory beside `out`, to build the outputs in."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would make the report private to its author
    return staging


def _swap(staging: Path, out: Path) -> None:
    """Rename the finished outputs over `out`, as the bundle is swapped in (training.bundle)."""
    from training.bundle import _swap as swap_directories

    swap_directories(staging, out.resolve())


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
