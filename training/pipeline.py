"""The training job and offline scoring: `fraudwatch train` and `fraudwatch score-file`.

`train`: labelled history (generated, or any file in the contract's schema) → offline features (the
Lambda's own definitions, replayed in time order) → XGBoost on a time split → thresholds chosen on
validation → evaluation report on the test period → the model bundle, swapped in whole.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fraudwatch.domain.label import DEFAULT_LABEL_DELAY

# Before anything loads xgboost: passive OpenMP waiting (why: training/train.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from training.evaluate import Evaluation
    from training.train import ThresholdChoice, TimeSplit, TrainedModel

DEFAULT_TRANSACTIONS = 200_000
DEFAULT_DAYS = 60
DEFAULT_SEED = 7
DEFAULT_BUNDLE = Path("layers/model/bundle")
DEFAULT_REPORTS = Path("reports")
SCORE_CHUNK = 50_000

THRESHOLD_RULE = (
    "REJECTED = the lowest score whose alerts reach precision >= {reject_precision:.2f} "
    "(with at least {min_alerts} alerts); FLAGGED = the highest score that still reaches "
    "recall >= {flag_recall:.2f}, unless that flags more than {review_budget:.1%} of transactions, "
    "in which case the lowest score within that review budget; FLAGGED never above REJECTED."
)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `train` and `score-file`."""
    train = subparsers.add_parser(
        "train",
        help="generate (or read) labelled history, train, evaluate and write the model bundle",
        description=(
            "Train the fraud model: labelled history → features → XGBoost on a time split → thresholds "
            "→ evaluation report → model bundle. Without --data, history is generated."
        ),
    )
    train.add_argument("--data", type=Path, help="a labelled transaction file (.csv or .parquet)")
    train.add_argument(
        "--transactions",
        type=_positive_int,
        default=DEFAULT_TRANSACTIONS,
        help=f"transactions to generate without --data (default {DEFAULT_TRANSACTIONS:,})",
    )
    train.add_argument(
        "--days",
        type=_positive_int,
        default=DEFAULT_DAYS,
        help=f"days of history to generate (default {DEFAULT_DAYS})",
    )
    train.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    train.add_argument(
        "--bundle",
        type=Path,
        default=DEFAULT_BUNDLE,
        help=f"model bundle directory (default {DEFAULT_BUNDLE})",
    )
    train.add_argument(
        "--reports",
        type=Path,
        default=DEFAULT_REPORTS,
        help=f"where reports/<version>/ is written (default {DEFAULT_REPORTS})",
    )
    train.add_argument(
        "--threads", type=_positive_int, default=2, help="XGBoost threads (default 2: these machines' cores)"
    )
    add_label_delay_option(train)
    train.set_defaults(run=run_train)

    score = subparsers.add_parser(
        "score-file",
        help="score a transaction file offline with the model bundle",
        description=(
            "Score every transaction of a file in time order, through the same profile updates, "
            "features and model as the Lambda; write transaction_id, score and decision per row."
        ),
    )
    score.add_argument("--data", type=Path, required=True, help="a transaction file (.csv or .parquet)")
    score.add_argument("--out", type=Path, required=True, help="where to write the scores (.csv or .parquet)")
    score.add_argument(
        "--bundle",
        type=Path,
        default=DEFAULT_BUNDLE,
        help=f"model bundle directory (default {DEFAULT_BUNDLE})",
    )
    add_label_delay_option(score)
    score.set_defaults(run=run_score_file)


def add_label_delay_option(parser: argparse.ArgumentParser) -> None:
    """`--label-delay-days`: when each transaction's fraud label (`is_fraud`) becomes known."""
    parser.add_argument(
        "--label-delay-days",
        type=_days,
        default=DEFAULT_LABEL_DELAY / 86400,
        metavar="DAYS",
        help=(
            "feed each transaction's is_fraud label back this many days after it, as chargebacks come "
            f"back, for the merchant risk features (default {DEFAULT_LABEL_DELAY / 86400:g}; "
            "ignored without is_fraud)"
        ),
    )


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if not 0 <= value <= 3650:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3650 days, got {value:g}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


@dataclass(slots=True)
class Steps:
    """Prints one line per step with its duration, and keeps the durations."""

    total: int
    say: Callable[[str], None] = print
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU time of the whole process (every thread) per step."""

    @contextmanager
    def step(self, name: str, what: str) -> Iterator[None]:
        """Time one step."""
        number = len(self.seconds) + 1
        self.say(f"[{number}/{self.total}] {what}")
        started, cpu_started = time.perf_counter(), time.process_time()
        yield
        self.seconds[name] = time.perf_counter() - started
        self.cpu_seconds[name] = time.process_time() - cpu_started
        self.say(f"      {name}: {self.seconds[name]:.1f} s")


@dataclass(slots=True)
class TrainingRun:
    """Everything a training run produced."""

    version: str
    model: TrainedModel
    thresholds: ThresholdChoice
    evaluation: Evaluation
    card: dict[str, Any]
    report: Path
    bundle: Path
    seconds: dict[str, float]


def generated_history(transactions: int, days: int, seed: int, progress: bool) -> pd.DataFrame:
    """Labelled history from the generator."""
    from training.generate import GeneratorConfig, generate_history

    config = GeneratorConfig(n_transactions=transactions, days=days, seed=seed)
    return generate_history(config, progress=progress)


def run_training(
    frame: pd.DataFrame,
    *,
    source: str,
    bundle_dir: Path,
    reports_dir: Path,
    seed: int = DEFAULT_SEED,
    nthread: int = 2,
    label_delay: float = DEFAULT_LABEL_DELAY,
    checked: bool = False,
    progress: bool = False,
    steps: Steps | None = None,
) -> TrainingRun:
    """Features → train → thresholds → evaluate → bundle, for a labelled frame."""
    from training.bundle import model_version, write_bundle
    from training.evaluate import evaluate, write_report
    from training.features import compute_features
    from training.io import LABEL, PATTERN, check_transactions
    from training.train import choose_thresholds, predict, time_split, train_model

    steps = steps or Steps(total=5, say=lambda _: None)
    with steps.step("features", f"features of {len(frame):,} transactions (replaying each user's history)"):
        if not checked:
            check_transactions(frame, source=source, labelled=True)
        matrix = compute_features(
            frame, source=source, check=False, label_delay=label_delay, progress=progress
        )
    labels = frame[LABEL].to_numpy(dtype=bool)
    with steps.step("train", "training XGBoost on the earliest 70%, early stopping on the next 15%"):
        split = time_split(matrix.epochs)
        model = train_model(matrix.values, labels, split, seed=seed, nthread=nthread, progress=progress)
        thresholds = choose_thresholds(model.validation_scores, labels[split.validation])
    trained_at = datetime.now(UTC).replace(microsecond=0)
    version = model_version(model.booster, trained_at)
    with steps.step("evaluate", "evaluating on the latest 15% and writing the report"):
        test_scores = predict(model.booster, matrix.values[split.test])
        patterns = frame[PATTERN].to_numpy(dtype=str)[split.test] if PATTERN in frame.columns else None
        evaluation = evaluate(model.booster, test_scores, labels[split.test], patterns, thresholds)
        card = model_card(
            version,
            trained_at,
            source,
            frame,
            matrix.epochs,
            split,
            model,
            thresholds,
            evaluation,
            label_delay,
        )
        report = write_report(
            reports_dir / version,
            version=version,
            evaluation=evaluation,
            scores=test_scores,
            labels=labels[split.test],
            card=card,
        )
    with steps.step("bundle", f"writing the model bundle to {bundle_dir}"):
        bundle = write_bundle(bundle_dir, model.booster, thresholds_file(thresholds), card)
    return TrainingRun(version, model, thresholds, evaluation, card, report, bundle, steps.seconds)


def thresholds_file(choice: ThresholdChoice) -> dict[str, Any]:
    """The content of thresholds.json."""
    from dataclasses import asdict

    targets = asdict(choice.targets)
    return {
        "flag": choice.flag.threshold,
        "reject": choice.reject.threshold,
        "targets": targets,
        "rule": THRESHOLD_RULE.format(**targets),
        "validation": {"flag": asdict(choice.flag), "reject": asdict(choice.reject)},
        "notes": list(choice.notes),
    }


def model_card(
    version: str,
    trained_at: datetime,
    source: str,
    frame: pd.DataFrame,
    epochs: np.ndarray,
    split: TimeSplit,
    model: TrainedModel,
    thresholds: ThresholdChoice,
    evaluation: Evaluation,
    label_delay: float,
) -> dict[str, Any]:
    """The content of model_card.json."""
    from dataclasses import asdict

    from sklearn.metrics import roc_auc_score

    from training.bundle import git_state, libraries
    from training.io import LABEL, PATTERN

    labels = frame[LABEL].to_numpy(dtype=bool)
    commit, dirty = git_state()
    patterns: dict[str, int] = {}
    if PATTERN in frame.columns:
        counts = frame.loc[frame[LABEL], PATTERN].value_counts()
        patterns = {str(name): int(count) for name, count in counts.items()}
    return {
        "version": version,
        "trained_at": trained_at.isoformat(),
        "git_commit": commit,
        "git_dirty": dirty,
        "data": {
            "source": source,
            "rows": len(frame),
            "frauds": int(labels.sum()),
            "fraud_rate": float(labels.mean()),
            "users": int(frame["user_id"].nunique()),
            "patterns": patterns,
            "label_delay_days": label_delay / 86400,
            "periods": {
                name: _period(epochs[mask], labels[mask])
                for name, mask in (
                    ("training", split.train),
                    ("validation", split.validation),
                    ("test", split.test),
                )
            },
        },
        "model": {
            "objective": "binary:logistic",
            "features": list(model.booster.feature_names or ()),
            "params": model.params,
            "rounds": model.booster.num_boosted_rounds(),
        },
        "imbalance": {
            "chosen": model.chosen.name,
            "scale_pos_weight": model.chosen.scale_pos_weight,
            "rule": "the weighting with the best validation average precision",
            "candidates": [asdict(c) for c in model.candidates],
        },
        "thresholds": thresholds_file(thresholds),
        "metrics": {
            "validation": {
                "average_precision": model.chosen.validation_average_precision,
                "roc_auc": float(roc_auc_score(labels[split.validation], model.validation_scores)),
            },
            "test": evaluation.to_dict(),
        },
        "libraries": libraries(),
    }


def _period(epochs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    return {
        "start": datetime.fromtimestamp(float(epochs.min()), UTC).isoformat(),
        "end": datetime.fromtimestamp(float(epochs.max()), UTC).isoformat(),
        "rows": len(epochs),
        "frauds": int(labels.sum()),
    }


def run_train(args: argparse.Namespace) -> int:
    """`fraudwatch train`."""
    from fraudwatch.errors import FraudwatchError
    from training.io import read_transactions

    steps = Steps(total=5)
    started = time.perf_counter()
    try:
        if args.data is not None:
            with steps.step("read", f"reading {args.data}"):
                frame = read_transactions(args.data, labelled=True)
            source = str(args.data)
        else:
            with steps.step(
                "generate", f"generating {args.transactions:,} transactions over {args.days} days"
            ):
                frame = generated_history(args.transactions, args.days, args.seed, progress=True)
            source = f"generated: {args.transactions:,} transactions, {args.days} days, seed {args.seed}"
        run = run_training(
            frame,
            source=source,
            bundle_dir=args.bundle,
            reports_dir=args.reports,
            seed=args.seed,
            nthread=args.threads,
            label_delay=args.label_delay_days * 86400,
            checked=args.data is not None,
            progress=True,
            steps=steps,
        )
    except FraudwatchError as exc:
        print(f"fraudwatch train: error: {exc}", file=sys.stderr)
        return 1
    print(summary(run, time.perf_counter() - started))
    return 0


def summary(run: TrainingRun, seconds: float) -> str:
    """The closing lines of `fraudwatch train`."""
    e, t = run.evaluation, run.thresholds
    lines = [
        "",
        f"model {run.version} trained in {seconds:.1f} s",
        f"  test period: {e.transactions:,} transactions, {e.frauds:,} fraud; "
        f"ROC AUC {e.roc_auc:.4f}, average precision {e.average_precision:.4f}",
        f"  imbalance: {run.model.chosen.name} (scale_pos_weight {run.model.chosen.scale_pos_weight:.2f})",
        f"  FLAGGED  >= {t.flag.threshold:.4f}: test precision {e.at_flag.precision:.3f}, "
        f"recall {e.at_flag.recall:.3f}, {e.at_flag.alert_share:.2%} of transactions",
        f"  REJECTED >= {t.reject.threshold:.4f}: test precision {e.at_reject.precision:.3f}, "
        f"recall {e.at_reject.recall:.3f}",
        "  recall per pattern (FLAGGED or REJECTED / REJECTED):",
        *[f"    {p.pattern:<22} {p.flagged_or_rejected:6.1%} / {p.rejected:6.1%}" for p in e.patterns],
        *[f"  note: {note}" for note in t.notes],
        f"  report: {run.report}",
        f"  bundle: {run.bundle}",
    ]
    return "\n".join(lines)


def run_score_file(args: argparse.Namespace) -> int:
    """`fraudwatch score-file`."""
    from fraudwatch.adapters.model import load_model
    from fraudwatch.errors import FraudwatchError
    from training.io import read_transactions

    try:
        model = load_model(args.bundle)
        frame = read_transactions(args.data, labelled=False)
        scored = score_frame(
            frame, model, source=str(args.data), label_delay=args.label_delay_days * 86400, progress=True
        )
        write_table(scored, args.out)
    except FraudwatchError as exc:
        print(f"fraudwatch score-file: error: {exc}", file=sys.stderr)
        return 1
    counts = scored["decision"].value_counts()
    decided = ", ".join(
        f"{name} {int(counts.get(name, 0)):,}" for name in ("APPROVED", "FLAGGED", "REJECTED")
    )
    print(f"scored {len(scored):,} transactions with model {model.version}: {decided} → {args.out}")
    return 0


def score_frame(
    frame: pd.DataFrame,
    model: Any,
    *,
    source: str,
    label_delay: float = DEFAULT_LABEL_DELAY,
    progress: bool = False,
) -> pd.DataFrame:
    """Each transaction's score and decision, in time order (the order it was scored in).

    A file with `is_fraud` feeds its labels back `label_delay` seconds after each transaction.
    """
    import pandas as pd

    from training.features import compute_features
    from training.io import LABEL, PATTERN

    matrix = compute_features(frame, source=source, check=False, label_delay=label_delay, progress=progress)
    scores = score_rows(model, matrix.values[matrix.order], progress)
    out = pd.DataFrame(
        {
            "transaction_id": frame["transaction_id"].to_numpy()[matrix.order],
            "timestamp": frame["timestamp"].to_numpy()[matrix.order],
            "score": scores,
            "decision": [model.thresholds.decide(score).value for score in scores.tolist()],
        }
    )
    for column in (LABEL, PATTERN):
        if column in frame.columns:
            out[column] = frame[column].to_numpy()[matrix.order]
    return out


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write CSV or Parquet by suffix, atomically (the generator's writer); errors name the file."""
    from training.generate import write_history
    from training.io import DataFileError

    try:
        write_history(frame, path)
    except (ValueError, OSError) as exc:
        raise DataFileError(f"{path}: cannot write: {exc}") from exc


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
