"""`fraudwatch backtest`: the command line of `training.backtest.run.run_backtest`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudwatch.domain.features import DAY
from fraudwatch.errors import FraudwatchError
from infra.cli import at_least
from training.backtest.config import BacktestConfig, PeriodBounds, parse_bound
from training.defaults import CARD_TOP_K
from training.distributed.options import add_engine_options, engine_from
from training.pipeline import DEFAULT_SEED, add_label_delay_option
from training.selection import add_search_option
from training.steps import Steps

if TYPE_CHECKING:
    from training.backtest.run import BacktestRun

DEFAULT_OUT = Path("backtest")


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
            "precision, recall and precision at 1% FPR, recall per fraud pattern and the daily top-k "
            "precision per card, with and without the merchant risk features. By default the periods "
            "start at the UTC midnight of the file's first transaction: training, then a gap, then the "
            "test; --train-start and the other dates place them anywhere, and everything before the "
            "training start is replayed to warm the profiles but not trained on."
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
    for option, what in (
        (
            "--train-start",
            "start of training (default: the first transaction's UTC midnight); "
            "earlier transactions only warm the profiles",
        ),
        ("--train-end", "end of training, exclusive (default: --train-days after its start)"),
        ("--test-start", "start of the test (default: --gap-days after the training end)"),
        (
            "--test-end",
            "end of the test, exclusive (default: --test-days after its start, or the file's end)",
        ),
    ):
        parser.add_argument(
            option,
            type=_bound,
            metavar="DATE",
            help=f"{what}; a date (its UTC midnight) or an ISO 8601 instant",
        )
    add_label_delay_option(parser)
    add_search_option(parser)
    parser.add_argument(
        "--top-k",
        type=at_least(1),
        default=CARD_TOP_K,
        metavar="K",
        help="cards an analyst reviews per day, for the card precision top-k: each day's k riskiest cards "
        f"not already caught on an earlier day (default {CARD_TOP_K})",
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
    add_engine_options(parser)
    parser.set_defaults(run=run_command)


def _bound(text: str) -> float:
    """argparse's type for a period bound: its own message names the option and the value."""
    try:
        return parse_bound(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def run_command(args: argparse.Namespace) -> int:
    """`fraudwatch backtest`; its errors are printed by infra.cli: exit 2 on a named input error (nothing
    written), 1 when the run itself fails."""
    from training.backtest.run import check_out, run_backtest, step_count
    from training.io import read_transactions

    config = BacktestConfig(
        train_days=args.train_days,
        gap_days=args.gap_days,
        test_days=args.test_days,
        bounds=PeriodBounds(args.train_start, args.train_end, args.test_start, args.test_end),
        label_delay=args.label_delay_days * DAY,
        top_k=args.top_k,
        compare=args.compare,
        seed=args.seed,
        nthread=args.threads,
        search=args.search,
        csv=args.csv,
    )
    steps = Steps(total=step_count(config) + 1, say=lambda line: print(line, file=sys.stderr))
    started = time.perf_counter()
    check_out(args.out)
    with steps.step("read", f"reading {args.file}"):
        frame = read_transactions(args.file, labelled=True)
    try:
        with engine_from(args, args.file) as engine:
            run = run_backtest(
                frame,
                source=str(args.file),
                out=args.out,
                config=config,
                steps=steps,
                progress=True,
                engine=engine,
            )
    except OSError as exc:
        raise FraudwatchError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    print(summary(run, time.perf_counter() - started))
    return 0


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
