"""`--engine`, `--scheduler`, `--workers`, `--train-on` and `--features`: the options of `backtest` and
`train` that move their replay and training to a Dask cluster. Nothing here imports Dask: the command
line starts quickly, and without `--engine dask` Dask is never loaded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fraudwatch.errors import UsageError

if TYPE_CHECKING:
    from training.distributed.engine import DaskEngine

ENGINES = ("local", "dask")
TRAIN_ON = ("here", "cluster")


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that choose where the replay and the training run."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this machine's processes (default); dask: the replay on a Dask cluster, the same "
        "features bit for bit (docs/dask.md)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="the Dask scheduler to use with --engine dask (tcp://host:8786); default: a LocalCluster here",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="workers of the LocalCluster without --scheduler (default 2: these machines' cores)",
    )
    parser.add_argument(
        "--train-on",
        choices=TRAIN_ON,
        help="with --engine dask, where the models are boosted: here (default), on the cluster's "
        "features gathered to this machine, the same model and figures as without --engine dask, bit "
        "for bit; cluster, with xgboost.dask where the features lie (close, not equal: docs/dask.md)",
    )
    parser.add_argument(
        "--features",
        metavar="DIR_OR_URL",
        help="with --engine dask, also write the feature matrix as a Parquet dataset there (a directory "
        "or an fsspec URL such as s3://bucket/prefix), replaced whole when complete",
    )


@contextmanager
def engine_from(args: argparse.Namespace, history: Path | None) -> Iterator[DaskEngine | None]:
    """The Dask engine the options ask for (connected, closed after), or None for this machine's.

    `history` is the command's input file: a Parquet one the workers read themselves, any other is
    sent to them from here.
    """
    if args.engine != "dask":
        for option in ("scheduler", "workers", "features", "train_on"):
            if getattr(args, option) is not None:
                raise UsageError(f"--{option.replace('_', '-')} needs --engine dask")
        yield None
        return
    if getattr(args, "search", None) == "wide" and args.train_on == "cluster":
        # Its exact-tree configurations train on one machine only (`training.distributed.train`).
        raise UsageError(
            "--search wide cannot train with --train-on cluster (XGBoost trains exact trees on one "
            "machine only): use --train-on here, or --search small"
        )
    if args.workers is not None and (args.scheduler is not None or args.workers < 1):
        problem = "is for the LocalCluster, not --scheduler's" if args.scheduler else "must be at least 1"
        raise UsageError(f"--workers {problem}, got {args.workers}")
    from training.distributed.cluster import LOCAL_WORKERS, connect
    from training.distributed.engine import DaskEngine

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    parquet = history is not None and history.suffix.lower() in (".parquet", ".pq")
    with connect(args.scheduler, workers=args.workers or LOCAL_WORKERS, say=say) as client:
        yield DaskEngine(
            client,
            history=str(history.resolve()) if parquet and history is not None else None,
            features_out=args.features,
            train_here=args.train_on != "cluster",
            progress=True,
            say=say,
        )
