"""The training job's commands: `fraudwatch train` and `fraudwatch score-file`.

`train`: labelled history (generated, or any file in the contract's schema) → offline features (the
Lambda's own definitions, replayed in time order, `training.features`) → the fit step on a time split
(`training.fit`: XGBoost, thresholds chosen on validation, evaluation report on the test period, the
model bundle swapped in whole). `score-file`: `training.score`.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudwatch.domain.label import DEFAULT_LABEL_DELAY
from training.distributed.options import add_engine_options, engine_from
from training.selection import DEFAULT_SEARCH, add_search_option
from training.steps import Steps

# Before anything loads xgboost: passive OpenMP waiting (why: training/train.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if TYPE_CHECKING:
    import pandas as pd

    from training.distributed.engine import DaskEngine
    from training.evaluate import Evaluation
    from training.train import ThresholdChoice, TrainedModel

DEFAULT_TRANSACTIONS = 200_000
DEFAULT_DAYS = 60
DEFAULT_SEED = 7
# The bundle the functions and the embedded stack load, whatever directory a command is run from.
DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "layers" / "model" / "bundle"
DEFAULT_REPORTS = Path("reports")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `train` and `score-file`."""
    from infra.cli import at_least

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
        type=at_least(1),
        default=DEFAULT_TRANSACTIONS,
        help=f"transactions to generate without --data (default {DEFAULT_TRANSACTIONS:,})",
    )
    train.add_argument(
        "--days",
        type=at_least(1),
        default=DEFAULT_DAYS,
        help=f"days of history to generate (default {DEFAULT_DAYS})",
    )
    train.add_argument(
        "--seed", type=at_least(0), default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})"
    )
    train.add_argument(
        "--bundle",
        type=Path,
        default=DEFAULT_BUNDLE,
        help="model bundle directory (default: the project's layers/model/bundle)",
    )
    train.add_argument(
        "--reports",
        type=Path,
        default=DEFAULT_REPORTS,
        help=f"where reports/<version>/ is written (default {DEFAULT_REPORTS})",
    )
    train.add_argument(
        "--threads", type=at_least(1), default=2, help="XGBoost threads (default 2: these machines' cores)"
    )
    add_label_delay_option(train)
    add_search_option(train)
    add_engine_options(train)
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
        help="model bundle directory (default: the project's layers/model/bundle)",
    )
    add_label_delay_option(score)
    score.set_defaults(run=run_score_file)


def add_label_delay_option(parser: argparse.ArgumentParser) -> None:
    """`--label-delay-days`: when each transaction's fraud label (`is_fraud`) becomes known."""
    from infra.cli import number_from

    parser.add_argument(
        "--label-delay-days",
        type=number_from(0, 3650),
        default=DEFAULT_LABEL_DELAY / 86400,
        metavar="DAYS",
        help=(
            "feed each transaction's is_fraud label back this many days after it, as chargebacks come "
            f"back, for the merchant risk features (default {DEFAULT_LABEL_DELAY / 86400:g}; "
            "ignored without is_fraud)"
        ),
    )


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
    from training.generate import generate_history
    from training.population.config import GeneratorConfig

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
    search: str = DEFAULT_SEARCH,
    checked: bool = False,
    progress: bool = False,
    steps: Steps | None = None,
    engine: DaskEngine | None = None,
) -> TrainingRun:
    """Features → fit (train → thresholds → evaluate → bundle), for a labelled frame; on a Dask cluster
    with `engine`."""
    from training.features import compute_features
    from training.fit import fit
    from training.io import check_transactions
    from training.train import time_split

    steps = steps or Steps(total=5, say=lambda _: None)
    with steps.step("features", f"features of {len(frame):,} transactions (replaying each user's history)"):
        if not checked:
            check_transactions(frame, source=source, labelled=True)
        if engine is not None:
            matrix = engine.features(frame, source=source, label_delay=label_delay)
        else:
            matrix = compute_features(
                frame, source=source, check=False, label_delay=label_delay, progress=progress
            )
    boosting = engine.boosting() if engine is not None else None
    fitted = fit(
        frame,
        matrix,
        time_split(matrix.epochs),
        source=source,
        bundle_dir=bundle_dir,
        reports_dir=reports_dir,
        label_delay=label_delay,
        seed=seed,
        nthread=nthread,
        steps=steps,
        training="choosing XGBoost's configuration on time-ordered folds of the earliest 85%, then refitting"
        + (" (xgboost.dask, on the cluster)" if boosting is not None else ""),
        search=search,
        progress=progress,
        boosting=boosting,
    )
    assert fitted.report is not None  # a reports directory was given
    return TrainingRun(
        fitted.version,
        fitted.model,
        fitted.thresholds,
        fitted.evaluation,
        fitted.card,
        fitted.report,
        fitted.bundle,
        steps.seconds,
    )


def run_train(args: argparse.Namespace) -> int:
    """`fraudwatch train`; its errors are printed by infra.cli (a bad --data file: exit 2)."""
    from training.io import read_transactions

    steps = Steps(total=5)
    started = time.perf_counter()
    if args.data is not None:
        with steps.step("read", f"reading {args.data}"):
            frame = read_transactions(args.data, labelled=True)
        source = str(args.data)
    else:
        with steps.step("generate", f"generating {args.transactions:,} transactions over {args.days} days"):
            frame = generated_history(args.transactions, args.days, args.seed, progress=True)
        source = f"generated: {args.transactions:,} transactions, {args.days} days, seed {args.seed}"
    with engine_from(args, args.data) as engine:
        run = run_training(
            frame,
            source=source,
            bundle_dir=args.bundle,
            reports_dir=args.reports,
            seed=args.seed,
            nthread=args.threads,
            label_delay=args.label_delay_days * 86400,
            search=args.search,
            checked=args.data is not None,
            progress=True,
            steps=steps,
            engine=engine,
        )
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
        f"  chosen: {run.model.chosen.name} ({run.model.search} search, mean fold average precision "
        f"{run.model.chosen.validation_average_precision:.4f}, {run.model.chosen.best_iteration + 1} rounds)",
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
    """`fraudwatch score-file`; its errors are printed by infra.cli (a bad file or bundle: exit 2)."""
    from fraudwatch.adapters.model import load_model
    from fraudwatch.errors import UsageError
    from training.io import read_transactions
    from training.population.config import SUFFIXES
    from training.score import score_frame, write_table

    if args.out.suffix.lower() not in SUFFIXES:  # before the scoring, not after it
        raise UsageError(f"--out {args.out}: use a .parquet or .csv file")
    model = load_model(args.bundle)
    frame = read_transactions(args.data, labelled=False)
    scored = score_frame(
        frame, model, source=str(args.data), label_delay=args.label_delay_days * 86400, progress=True
    )
    write_table(scored, args.out)
    counts = scored["decision"].value_counts()
    decided = ", ".join(
        f"{name} {int(counts.get(name, 0)):,}" for name in ("APPROVED", "FLAGGED", "REJECTED")
    )
    print(f"scored {len(scored):,} transactions with model {model.version}: {decided} → {args.out}")
    return 0
