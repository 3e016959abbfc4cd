"""The generator's two streams over one population: a whole history at once, or live, day by day.

`training.generate` is the public face (API, command); this module does the work, so that importing
the command line does not import numpy, pandas or Arrow.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from training.population import text
from training.population.activity import (
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
from training.population.config import GeneratorConfig
from training.population.patterns import (
    CARD_TESTING,
    COMPROMISED,
    PATTERN_SHARE,
    PATTERNS,
    SPIKE,
    TAKEOVER,
    VELOCITY,
)
from training.population.population import (
    CATEGORY_NAMES,
    DAY,
    HOUR,
    ZONE_CURRENCIES,
    ZONE_OFFSETS,
    Population,
    build_population,
)

if TYPE_CHECKING:
    import pandas as pd

_POPULATION, _HISTORY, _LIVE = range(3)
"""Independent random streams per purpose, so history and live mode share one population."""


def build_config_population(config: GeneratorConfig) -> Population:
    """The config's population: it depends on the seed and the sizes only."""
    return build_population(config.users, config.merchants, np.random.default_rng([config.seed, _POPULATION]))


def history_frame(config: GeneratorConfig, progress: bool) -> pd.DataFrame:
    """Exactly `config.n_transactions` labelled transactions over `config.days` days, in time order."""
    from tqdm import tqdm

    with tqdm(total=4, desc="generate", unit="step", disable=not progress) as bar:
        population = build_config_population(config)
        rng = np.random.default_rng([config.seed, _HISTORY])
        bar.update()
        rows = _history_rows(population, rng, config, bar)
        frame = _frame(population, rows, text.numbered("tx-", 1, len(rows)))
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


def live_transactions(
    config: GeneratorConfig, start: datetime, limit: int | None
) -> Iterator[dict[str, object]]:
    """The population's transactions from `start` on, a simulated day at a time, in time order."""
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
            population, rows.take(np.arange(ready)), text.numbered(f"tx-{tag}-", emitted + 1, ready)
        )
        for values in zip(*(column.tolist() for column in batch.values()), strict=True):
            yield dict(zip(batch, values, strict=True))
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


def _frame(population: Population, rows: Rows, ids: pa.Array) -> pd.DataFrame:
    import pandas as pd

    columns = _frame_columns(population, rows, ids)
    return pd.DataFrame(
        {
            name: pd.array(column, dtype="str") if isinstance(column, pa.Array) else column
            for name, column in columns.items()
        }
    )


def _frame_columns(population: Population, rows: Rows, ids: pa.Array) -> dict[str, pa.Array | np.ndarray]:
    """The rows as named columns, in COLUMNS order: text as Arrow arrays, numbers as numpy."""
    zone = population.zone[rows.user]
    return {
        "transaction_id": ids,
        "user_id": text.names(population.user_ids, rows.user),
        "merchant_id": text.names(population.merchant_ids, rows.merchant),
        "amount": rows.amount,
        "currency": text.names(ZONE_CURRENCIES, zone),
        "timestamp": text.local_timestamps(rows.epoch, ZONE_OFFSETS[zone]),
        "category": text.names(CATEGORY_NAMES, population.merchant_category[rows.merchant]),
        "is_fraud": rows.pattern != 0,
        "fraud_pattern": text.names(PATTERNS, rows.pattern),
    }
