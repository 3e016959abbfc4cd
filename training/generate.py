"""Labelled transaction history and a live stream from one synthetic population.

`generate_history` draws a whole period at once (numpy, vectorised: a million rows in seconds);
`iter_live` draws the same population's transactions a day at a time and yields them in time order.
Both label every row (`is_fraud`, `fraud_pattern`) and follow the stream's transaction contract.
The population lives in `training._population`, its behaviour in `training._population_activity`.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training._population import (
    CATEGORY_NAMES,
    DAY,
    HOUR,
    ZONE_CURRENCIES,
    ZONE_OFFSETS,
    Population,
    build_population,
)
from training._population_activity import (
    CARD_TESTING,
    COMPROMISED,
    PATTERN_SHARE,
    PATTERNS,
    SPIKE,
    TAKEOVER,
    VELOCITY,
    Compromise,
    Rows,
    account_takeover,
    card_testing,
    compromise_merchants,
    concat_rows,
    empty_rows,
    event_sizes,
    genuine,
    random_event_sizes,
    spending_spike,
    velocity_burst,
)

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = (
    "transaction_id",
    "user_id",
    "merchant_id",
    "amount",
    "currency",
    "timestamp",
    "category",
    "is_fraud",
    "fraud_pattern",
)
FRAUD_PATTERNS = PATTERNS[1:]
MIN_TRANSACTIONS = 100
MAX_FRAUD_RATE = 0.5
DEFAULT_START = datetime(2026, 9, 1, tzinfo=UTC)
_POPULATION, _HISTORY, _LIVE = range(3)
"""Independent random streams per purpose, so history and live mode share one population."""


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate; the same config (seed included) always gives the same data."""

    n_transactions: int = 50_000
    days: int = 60
    n_users: int | None = None
    """Default: about n_transactions / 100, at least 200."""
    n_merchants: int | None = None
    """Default: about users / 5, at least 100."""
    fraud_rate: float = 0.01
    seed: int = 7
    start: datetime = field(default=DEFAULT_START)

    def __post_init__(self) -> None:
        if self.n_transactions < MIN_TRANSACTIONS:
            raise ValueError(f"n_transactions must be at least {MIN_TRANSACTIONS}, got {self.n_transactions}")
        if self.days < 1:
            raise ValueError(f"days must be at least 1, got {self.days}")
        if not 0.0 <= self.fraud_rate <= MAX_FRAUD_RATE:
            raise ValueError(f"fraud_rate must be between 0 and {MAX_FRAUD_RATE}, got {self.fraud_rate}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        if self.start.tzinfo is None:
            raise ValueError("start needs a time zone (an aware datetime)")
        if self.n_users is not None and self.n_users < 1:
            raise ValueError(f"n_users must be at least 1, got {self.n_users}")

    @property
    def users(self) -> int:
        """The number of users, resolved."""
        return self.n_users if self.n_users is not None else max(200, self.n_transactions // 100)

    @property
    def merchants(self) -> int:
        """The number of merchants, resolved."""
        return self.n_merchants if self.n_merchants is not None else max(100, self.users // 5)


def build_config_population(config: GeneratorConfig) -> Population:
    """The config's population: it depends on the seed and the sizes only."""
    return build_population(config.users, config.merchants, np.random.default_rng([config.seed, _POPULATION]))


def generate_history(config: GeneratorConfig, progress: bool = False) -> pd.DataFrame:
    """Exactly `config.n_transactions` labelled transactions over `config.days` days, in time order."""
    from tqdm import tqdm

    with tqdm(total=4, desc="generate", unit="step", disable=not progress) as bar:
        population = build_config_population(config)
        rng = np.random.default_rng([config.seed, _HISTORY])
        bar.update()
        rows = _history_rows(population, rng, config, bar)
        frame = _frame(population, rows, _transaction_ids("tx", 1, len(rows)))
        bar.update()
    return frame


def _history_rows(
    population: Population, rng: np.random.Generator, config: GeneratorConfig, bar: Any
) -> Rows:
    t0 = math.ceil(config.start.timestamp())
    t1 = t0 + config.days * DAY
    # Fraud starts after a short warm-up so victims have some history, and ends an hour early so
    # every burst ends inside the period.
    fraud_t0 = t0 + min(DAY, (t1 - t0) // 10)
    fraud_t1 = t1 - HOUR
    targets = _pattern_targets(round(config.fraud_rate * config.n_transactions))
    sizes = {
        pattern: event_sizes(rng, pattern, targets[pattern]) for pattern in (TAKEOVER, CARD_TESTING, VELOCITY)
    }
    injected = sum(int(s.sum()) for s in sizes.values()) + targets[SPIKE]
    if injected >= config.n_transactions:
        raise ValueError(
            f"fraud_rate {config.fraud_rate} is too high for {config.n_transactions} transactions"
        )
    ordinary = genuine(population, rng, config.n_transactions - injected, t0, t1)
    bar.update()
    compromised, _ = compromise_merchants(ordinary, rng, targets[COMPROMISED], fraud_t0, fraud_t1, [])
    ordinary.pattern[compromised] = COMPROMISED
    rows = concat_rows(
        [
            ordinary,
            account_takeover(population, rng, sizes[TAKEOVER], fraud_t0, fraud_t1),
            card_testing(population, rng, sizes[CARD_TESTING], fraud_t0, fraud_t1),
            spending_spike(population, rng, targets[SPIKE], fraud_t0, fraud_t1),
            velocity_burst(population, rng, sizes[VELOCITY], fraud_t0, fraud_t1),
        ]
    )
    bar.update()
    return rows.take(np.argsort(rows.epoch, kind="stable"))


def _pattern_targets(fraud_rows: int) -> dict[int, int]:
    """Fraud rows per pattern, by PATTERN_SHARE, summing to `fraud_rows` (largest remainders)."""
    exact = {pattern: share * fraud_rows for pattern, share in PATTERN_SHARE.items()}
    targets = {pattern: int(value) for pattern, value in exact.items()}
    by_remainder = sorted(exact, key=lambda p: exact[p] - targets[p], reverse=True)
    for pattern in by_remainder[: fraud_rows - sum(targets.values())]:
        targets[pattern] += 1
    return targets


def iter_live(
    config: GeneratorConfig, *, start: datetime | None = None, limit: int | None = None
) -> Iterator[dict[str, object]]:
    """The population's transactions from `start` (default: now) on, in time order, labelled.

    About `n_transactions / days` transactions per simulated day, fraud at about `fraud_rate`.
    Deterministic for a seed and a start; transaction ids carry a tag of both, so runs with
    different starts never share an id. Endless unless `limit` is given.
    """
    start = datetime.now(UTC) if start is None else start
    if start.tzinfo is None:
        raise ValueError("start needs a time zone (an aware datetime)")
    population = build_config_population(config)
    t0 = math.ceil(start.timestamp())
    rng = np.random.default_rng([config.seed, _LIVE, t0])
    tag = hashlib.blake2b(f"{config.seed}:{start.isoformat()}".encode(), digest_size=5).hexdigest()
    per_day = config.n_transactions / config.days
    pending, open_compromises, emitted = empty_rows(), list[Compromise](), 0
    while limit is None or emitted < limit:
        t1 = t0 + DAY
        chunk, open_compromises = _live_day(population, rng, config, per_day, t0, t1, open_compromises)
        rows = concat_rows([pending, chunk])
        rows = rows.take(np.argsort(rows.epoch, kind="stable"))
        ready = int(np.searchsorted(rows.epoch, t1))
        if limit is not None:
            ready = min(ready, limit - emitted)
        batch = _frame_columns(
            population, rows.take(np.arange(ready)), _transaction_ids(f"tx-{tag}", emitted + 1, ready)
        )
        for values in zip(*(batch[name].tolist() for name in COLUMNS), strict=True):
            yield dict(zip(COLUMNS, values, strict=True))
        emitted += ready
        pending, t0 = rows.take(np.arange(ready, len(rows))), t1


def _live_day(
    population: Population,
    rng: np.random.Generator,
    config: GeneratorConfig,
    per_day: float,
    t0: int,
    t1: int,
    open_compromises: list[Compromise],
) -> tuple[Rows, list[Compromise]]:
    """One simulated day: Poisson counts around the configured rates; bursts may spill past `t1`."""
    fraud_per_day = per_day * config.fraud_rate
    sizes = {
        pattern: random_event_sizes(rng, pattern, PATTERN_SHARE[pattern] * fraud_per_day)
        for pattern in (TAKEOVER, CARD_TESTING, VELOCITY)
    }
    ordinary = genuine(population, rng, int(rng.poisson(per_day)), t0, t1)
    target = int(rng.poisson(PATTERN_SHARE[COMPROMISED] * fraud_per_day))
    compromised, still_open = compromise_merchants(ordinary, rng, target, t0, t1, open_compromises)
    ordinary.pattern[compromised] = COMPROMISED
    rows = concat_rows(
        [
            ordinary,
            account_takeover(population, rng, sizes[TAKEOVER], t0, t1),
            card_testing(population, rng, sizes[CARD_TESTING], t0, t1),
            spending_spike(population, rng, int(rng.poisson(PATTERN_SHARE[SPIKE] * fraud_per_day)), t0, t1),
            velocity_burst(population, rng, sizes[VELOCITY], t0, t1),
        ]
    )
    return rows, still_open


def _frame(population: Population, rows: Rows, ids: np.ndarray) -> pd.DataFrame:
    import pandas as pd

    columns = _frame_columns(population, rows, ids)
    return pd.DataFrame({name: columns[name] for name in COLUMNS})


def _frame_columns(population: Population, rows: Rows, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The rows as named columns: ids, names, local ISO timestamps and labels."""
    zone = population.zone[rows.user]
    return {
        "transaction_id": ids,
        "user_id": population.user_ids[rows.user],
        "merchant_id": population.merchant_ids[rows.merchant],
        "amount": rows.amount,
        "currency": np.asarray(ZONE_CURRENCIES, dtype=object)[zone],
        "timestamp": _local_timestamps(rows.epoch, zone),
        "category": np.asarray(CATEGORY_NAMES, dtype=object)[population.merchant_category[rows.merchant]],
        "is_fraud": rows.pattern != 0,
        "fraud_pattern": np.asarray(PATTERNS, dtype=object)[rows.pattern],
    }


def _local_timestamps(epoch: np.ndarray, zone: np.ndarray) -> np.ndarray:
    """ISO 8601 local wall-clock time with the zone's offset, e.g. 2026-09-01T13:45:12+02:00."""
    out = np.empty(len(epoch), dtype="U25")
    for index, offset in enumerate(ZONE_OFFSETS):
        mask = zone == index
        if not mask.any():
            continue
        local = (epoch[mask] + offset).astype("datetime64[s]")
        out[mask] = np.strings.add(np.datetime_as_string(local, unit="s"), _offset_text(int(offset)))
    return out


def _offset_text(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "-"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def _transaction_ids(prefix: str, first: int, count: int) -> np.ndarray:
    """`prefix`-NNNNNNNN numbered from `first`, zero-padded so text order is numeric order."""
    numbers = np.arange(first, first + count).astype(str)
    return np.strings.add(f"{prefix}-", np.strings.zfill(numbers, 8))


def write_history(df: pd.DataFrame, path: Path) -> None:
    """Write `df` as Parquet or CSV (by suffix), atomically: a temporary file, then a rename."""
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv"):
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


def summary(df: pd.DataFrame, seconds: float) -> str:
    """One line: rows, users, merchants, fraud rate, rows per pattern, seconds."""
    counts = df["fraud_pattern"].value_counts()
    patterns = ", ".join(f"{name} {int(counts.get(name, 0))}" for name in FRAUD_PATTERNS)
    return (
        f"{len(df):,} rows, {df['user_id'].nunique():,} users, {df['merchant_id'].nunique():,} merchants, "
        f"fraud {df['is_fraud'].mean():.2%} ({patterns}) in {seconds:.1f} s"
    )


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the `generate` subcommand."""
    parser = subparsers.add_parser(
        "generate",
        help="generate labelled transaction history",
        description="Generate labelled synthetic card transactions (five fraud patterns) to a file.",
    )
    parser.add_argument(
        "--transactions", type=_at_least(MIN_TRANSACTIONS), default=50_000, help="rows (default: 50000)"
    )
    parser.add_argument("--days", type=_at_least(1), default=60, help="days of history (default: 60)")
    parser.add_argument("--fraud-rate", type=_fraud_rate, default=0.01, help="share of fraud (default: 0.01)")
    parser.add_argument("--seed", type=_at_least(0), default=7, help="random seed (default: 7)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/history.parquet"),
        help="output file, .parquet or .csv (default: data/history.parquet)",
    )
    parser.set_defaults(run=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    """Generate, write, and print a one-line summary."""
    if args.out.suffix.lower() not in (".parquet", ".pq", ".csv"):
        print(f"generate: --out {args.out}: use a .parquet or .csv file", file=sys.stderr)
        return 2
    config = GeneratorConfig(
        n_transactions=args.transactions, days=args.days, fraud_rate=args.fraud_rate, seed=args.seed
    )
    began = time.perf_counter()
    try:
        frame = generate_history(config, progress=True)
    except ValueError as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 2
    try:
        write_history(frame, args.out)
    except OSError as exc:
        print(f"generate: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {summary(frame, time.perf_counter() - began)}")
    return 0


def _at_least(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _fraud_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= MAX_FRAUD_RATE:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_FRAUD_RATE}, got {value}")
    return value
