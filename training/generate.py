"""Labelled transaction history and a live stream from one synthetic population.

`generate_history` draws a whole period at once (numpy, vectorised: a million rows in seconds);
`iter_live` draws the same population's transactions a day at a time and yields them in time order.
Both label every row (`is_fraud`, `fraud_pattern`) and follow the stream's transaction contract.
The work happens in the `training.population` package (config, fraud patterns, population,
behaviour, streams, text columns); its heavy modules are imported only when data is generated, so the
command line starts quickly.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudwatch.errors import FraudwatchError, UsageError
from infra.cli import at_least, number_from
from training.population.config import MAX_FRAUD_RATE, MIN_TRANSACTIONS, SUFFIXES, GeneratorConfig
from training.population.patterns import FRAUD_PATTERNS

if TYPE_CHECKING:
    import pandas as pd


def generate_history(config: GeneratorConfig, progress: bool = False) -> pd.DataFrame:
    """Exactly `config.n_transactions` labelled transactions over `config.days` days, in time order.

    Columns are COLUMNS; rows are sorted by instant, ties by transaction_id.
    """
    from training.population.streams import history_frame

    return history_frame(config, progress)


def iter_live(
    config: GeneratorConfig, *, start: datetime | None = None, limit: int | None = None
) -> Iterator[dict[str, object]]:
    """The population's transactions from `start` (default: now) on, in time order, labelled.

    About `n_transactions / days` transactions per simulated day, fraud at about `fraud_rate`.
    Deterministic for a seed and a start; transaction ids carry a tag of both, so runs with
    different starts never share an id. Endless unless `limit` is given.
    """
    from training.population.streams import live_transactions

    start = datetime.now(UTC) if start is None else start
    if start.tzinfo is None:
        raise ValueError("start needs a time zone (an aware datetime)")
    return live_transactions(config, start, limit)


def write_history(df: pd.DataFrame, path: Path) -> None:
    """Write `df` as Parquet or CSV (by suffix), atomically: a temporary file, then a rename."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unsupported suffix {path.suffix!r} (use .parquet or .csv)")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if suffix == ".csv":
            df.to_csv(temporary, index=False)
        else:
            df.to_parquet(temporary, index=False)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def summary(df: pd.DataFrame, seconds: float, names: tuple[str, ...] = FRAUD_PATTERNS) -> str:
    """One line: rows, users, merchants, fraud rate, rows per pattern (`names`), seconds."""
    counts = df["fraud_pattern"].value_counts()
    patterns = ", ".join(f"{name} {int(counts.get(name, 0))}" for name in names)
    return (
        f"{len(df):,} rows, {df['user_id'].nunique():,} users, {df['merchant_id'].nunique():,} merchants, "
        f"fraud {df['is_fraud'].mean():.2%} ({patterns}) in {seconds:.1f} s"
    )


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the `generate` subcommand."""
    parser = subparsers.add_parser(
        "generate",
        help="generate labelled transaction history",
        description=(
            "Generate labelled synthetic card transactions to a file: the project's own population "
            "(--kind project, five fraud patterns), or a second kind written apart from it (--kind second: "
            "the card-fraud textbook's protocol, four fraud mechanics of its own, integer ids, no currency "
            "or category; docs/other_history.md)."
        ),
    )
    parser.add_argument(
        "--kind",
        choices=("project", "second"),
        default="project",
        help="which generator (default: project); --fraud-rate applies to the project's only",
    )
    parser.add_argument(
        "--transactions", type=at_least(MIN_TRANSACTIONS), default=50_000, help="rows (default: 50000)"
    )
    parser.add_argument("--days", type=at_least(1), default=60, help="days of history (default: 60)")
    parser.add_argument(
        "--fraud-rate",
        type=number_from(0, MAX_FRAUD_RATE),
        default=0.01,
        help="share of fraud (default: 0.01)",
    )
    parser.add_argument("--seed", type=at_least(0), default=7, help="random seed (default: 7)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/history.parquet"),
        help="output file, .parquet or .csv (default: data/history.parquet)",
    )
    parser.set_defaults(run=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    """Generate, write, and print a one-line summary."""
    if args.out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--out {args.out}: use a .parquet or .csv file")
    began = time.perf_counter()
    names: tuple[str, ...] = FRAUD_PATTERNS
    try:
        if args.kind == "second":
            from training.other_history import PATTERNS, OtherHistoryConfig, other_history

            frame = other_history(OtherHistoryConfig(args.transactions, args.days, args.seed))
            names = PATTERNS
        else:
            config = GeneratorConfig(
                n_transactions=args.transactions, days=args.days, fraud_rate=args.fraud_rate, seed=args.seed
            )
            frame = generate_history(config, progress=True)
    except ValueError as exc:
        raise UsageError(f"{exc}; see `fraudwatch generate --help`") from exc
    try:
        write_history(frame, args.out)
    except OSError as exc:
        raise FraudwatchError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    print(f"{args.out}: {summary(frame, time.perf_counter() - began, names)}")
    return 0
