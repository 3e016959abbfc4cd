"""What the population does: genuine transactions by habit, and the labelled fraud patterns.

Every function draws whole arrays of rows at once (no per-row Python), from an explicit
`numpy.random.Generator`, so a seed fixes the result. Times are integer epoch seconds (UTC instants);
the user's zone turns them into local wall-clock time only when the rows are written out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.population.patterns import (
    BURST_SIZE,
    CARD_TESTING,
    NONE,
    SPIKE,
    TAKEOVER,
    VELOCITY,
)
from training.population.population import (
    CARD_TESTING_CATEGORIES,
    CATEGORY_SCALE,
    DAY,
    DAY_HOURS,
    HOUR,
    MAX_PREFERRED,
    TAKEOVER_CATEGORIES,
    ZONE_OFFSETS,
    Population,
    pick_merchant,
)

LONGEST_BURST = HOUR
"""No event lasts longer than this, so an event started an hour before a boundary ends before it."""

_FAVOURITE_SHARE = 0.7
_NIGHT_START = np.array([1.0] * 4 + [0.0] * 20)
"""Takeover bursts start between 00:00 and 03:59 local and last at most an hour: all before 05:00."""
_ANY_HOUR = np.ones(24)
_COMPROMISE_DAYS = (10.0, 30.0)
"""How long a compromise goes unnoticed: long enough that chargebacks (days late) reveal it while it lasts."""
_COMPROMISE_SHARE = (0.3, 0.8)
"""The share of a compromised merchant's card payments that are fraudulent."""
_MAX_COMPROMISES = 60
_MAX_DRAWS = 1000
"""Rounds of rejection sampling; even a one-in-six acceptance leaves nothing after a few hundred."""


@dataclass(frozen=True, slots=True)
class Rows:
    """Transactions as parallel arrays (not yet sorted, not yet named)."""

    user: np.ndarray
    merchant: np.ndarray
    amount: np.ndarray
    epoch: np.ndarray
    pattern: np.ndarray

    def __len__(self) -> int:
        return len(self.user)

    def take(self, index: np.ndarray) -> Rows:
        """The rows at `index`, in that order."""
        return Rows(*(column[index] for column in self._columns()))

    def _columns(self) -> tuple[np.ndarray, ...]:
        return (self.user, self.merchant, self.amount, self.epoch, self.pattern)


def empty_rows() -> Rows:
    """No rows, with the right dtypes."""
    return _rows(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64), NONE)


def concat_rows(parts: list[Rows]) -> Rows:
    """All rows of `parts`, in order."""
    columns = zip(*(part._columns() for part in parts), strict=True)
    return Rows(*(np.concatenate(column) for column in columns))


def genuine(population: Population, rng: np.random.Generator, count: int, t0: int, t1: int) -> Rows:
    """`count` ordinary transactions in [t0, t1): users by activity, their hours, merchants, amounts."""
    draw = rng.random(count) * population.activity_cum[-1]
    users = np.searchsorted(population.activity_cum, draw, side="right")
    users = np.minimum(users, population.n_users - 1)
    epoch = sample_times(population, users, t0, t1, rng, DAY_HOURS, habitual=True)
    merchants = habitual_merchants(population, users, rng)
    return _rows(users, merchants, ordinary_amounts(population, users, merchants, rng), epoch, NONE)


def sample_times(
    population: Population,
    users: np.ndarray,
    t0: int,
    t1: int,
    rng: np.random.Generator,
    hour_weights: np.ndarray,
    *,
    habitual: bool,
) -> np.ndarray:
    """Instants in [t0, t1) whose local hour follows `hour_weights` (shifted by the user's chronotype).

    Rejection sampling, vectorised: draw uniform instants, keep each with the weight of its local hour,
    redraw the rest; each round shrinks the remainder geometrically.
    """
    keep_probability = hour_weights / hour_weights.max()
    out = np.empty(len(users), dtype=np.int64)
    todo = np.arange(len(users))
    for _ in range(_MAX_DRAWS):
        if not len(todo):
            return out
        who = users[todo]
        instants = t0 + (rng.random(len(todo)) * (t1 - t0)).astype(np.int64)
        local_hour = (instants + ZONE_OFFSETS[population.zone[who]]) // HOUR % 24
        if habitual:
            local_hour = (local_hour - population.hour_shift[who]) % 24
        kept = rng.random(len(todo)) < keep_probability[local_hour]
        out[todo[kept]] = instants[kept]
        todo = todo[~kept]
    # Only a window shorter than a day can miss the wanted hours altogether.
    raise ValueError(f"no instant in [{t0}, {t1}) falls in the wanted local hours")


def habitual_merchants(population: Population, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mostly a favourite (earlier favourites more often), else any merchant of a preferred category."""
    slot = (rng.random(len(users)) ** 2 * population.n_favourites[users]).astype(np.int64)
    favourite = population.favourites[users, slot]
    pref_slot = (rng.random(len(users)) * population.n_preferred[users]).astype(np.int64)
    other = pick_merchant(
        population.preferred[users, pref_slot],
        rng,
        population.merchant_popularity_cum,
        population.category_first,
    )
    return np.where(rng.random(len(users)) < _FAVOURITE_SHARE, favourite, other)


def ordinary_amounts(
    population: Population, users: np.ndarray, merchants: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The user's level times the category's scale, lognormal with the user's own spread."""
    scale = CATEGORY_SCALE[population.merchant_category[merchants]]
    noise = rng.standard_normal(len(users)) * population.spread[users]
    return np.exp(population.log_level[users] + noise) * scale  # type: ignore[no-any-return]


def event_sizes(rng: np.random.Generator, pattern: int, target_rows: int) -> np.ndarray:
    """Sizes of just enough events of `pattern` for `target_rows` rows.

    The last event is cut to what is missing but keeps the pattern's minimum size, so a burst stays
    a burst and the total exceeds the target by less than that minimum.
    """
    if target_rows <= 0:
        return np.empty(0, dtype=np.int64)
    low, high = BURST_SIZE[pattern]
    sizes = rng.integers(low, high + 1, size=target_rows // low + 1)
    needed = int(np.searchsorted(np.cumsum(sizes), target_rows)) + 1
    sizes = sizes[:needed]
    sizes[-1] = max(low, target_rows - int(sizes[:-1].sum()))
    return sizes


def random_event_sizes(rng: np.random.Generator, pattern: int, expected_rows: float) -> np.ndarray:
    """A Poisson number of events of `pattern`, about `expected_rows` rows on average."""
    low, high = BURST_SIZE[pattern]
    count = rng.poisson(expected_rows / ((low + high) / 2))
    return rng.integers(low, high + 1, size=count)


def account_takeover(
    population: Population, rng: np.random.Generator, sizes: np.ndarray, t0: int, t1: int
) -> Rows:
    """Bursts of high amounts at night, in categories the user never uses, so at new merchants."""
    users, event = _victims(population, rng, sizes)
    start = sample_times(population, users, t0, t1, rng, _NIGHT_START, habitual=False)
    length = rng.integers(15 * 60, LONGEST_BURST, size=len(sizes))
    epoch = start[event] + (rng.random(len(event)) * length[event]).astype(np.int64)
    user = users[event]
    categories = _unused_takeover_category(population, user, rng)
    merchants = pick_merchant(categories, rng, population.merchant_popularity_cum, population.category_first)
    usual = population.usual_amount(user)
    amount = np.maximum(usual * rng.uniform(4.0, 15.0, len(user)), rng.uniform(150.0, 600.0, len(user)))
    return _rows(user, merchants, amount, epoch, TAKEOVER)


def card_testing(
    population: Population, rng: np.random.Generator, sizes: np.ndarray, t0: int, t1: int
) -> Rows:
    """Rapid small amounts (0.50-5.00) at distinct online merchants, a few seconds apart."""
    pool = np.flatnonzero(np.isin(population.merchant_category, CARD_TESTING_CATEGORIES))
    sizes = np.minimum(sizes, len(pool))
    users, event = _victims(population, rng, sizes)
    start = sample_times(population, users, t0, t1, rng, _ANY_HOUR, habitual=False)
    first = np.cumsum(sizes) - sizes
    within = np.arange(len(event)) - first[event]
    elapsed = np.cumsum(rng.integers(3, 41, size=len(event)))
    epoch = start[event] + elapsed - elapsed[first[event]]
    # Distinct merchants per event: a stride through the pool that cannot wrap around onto itself.
    base = rng.integers(0, len(pool), size=len(sizes))
    stride = 1 + (rng.random(len(sizes)) * (len(pool) // sizes)).astype(np.int64)
    merchants = pool[(base[event] + within * stride[event]) % len(pool)]
    amount = rng.uniform(0.5, 5.0, len(event))
    return _rows(users[event], merchants, amount, epoch, CARD_TESTING)


def spending_spike(population: Population, rng: np.random.Generator, count: int, t0: int, t1: int) -> Rows:
    """Single purchases of 5-20 times the user's usual amount, otherwise in the user's habits."""
    users = rng.integers(0, population.n_users, size=count)
    epoch = sample_times(population, users, t0, t1, rng, DAY_HOURS, habitual=True)
    merchants = habitual_merchants(population, users, rng)
    amount = population.usual_amount(users) * rng.uniform(5.0, 20.0, count)
    return _rows(users, merchants, amount, epoch, SPIKE)


def velocity_burst(
    population: Population, rng: np.random.Generator, sizes: np.ndarray, t0: int, t1: int
) -> Rows:
    """10-30 ordinary-looking purchases within 20-60 minutes at the user's kind of merchants."""
    users, event = _victims(population, rng, sizes)
    start = sample_times(population, users, t0, t1, rng, DAY_HOURS, habitual=True)
    length = rng.integers(20 * 60, LONGEST_BURST, size=len(sizes))
    epoch = start[event] + (rng.random(len(event)) * length[event]).astype(np.int64)
    user = users[event]
    merchants = habitual_merchants(population, user, rng)
    amount = ordinary_amounts(population, user, merchants, rng) * rng.uniform(0.8, 1.6, len(user))
    return _rows(user, merchants, amount, epoch, VELOCITY)


@dataclass(frozen=True, slots=True)
class Compromise:
    """A merchant whose transactions are fraudulent, a `share` of them, from `start` to `end` (exclusive)."""

    merchant: int
    start: int
    end: int
    share: float


def compromise_merchants(
    rows: Rows,
    rng: np.random.Generator,
    target_rows: int,
    t0: int,
    t1: int,
    active: list[Compromise],
) -> tuple[np.ndarray, list[Compromise]]:
    """Genuine rows to relabel as compromised_merchant, and the compromises still open at `t1`.

    The `active` compromises (carried over from before `t0`) cover rows first; then merchants (drawn
    by volume, as busy merchants are the likelier targets) are compromised for 10-30 days, a random
    30-80% of their payments in that time fraudulent, until `target_rows` rows are covered. The
    compromise that reaches the target ends at that row, so exactly `target_rows` rows are covered
    whenever the rows allow it.
    """
    hit = np.zeros(len(rows), dtype=bool)
    genuine = rows.pattern == NONE
    weight = np.bincount(rows.merchant[genuine], minlength=1).astype(np.float64)
    carried, windows, attempts = list(active), list[Compromise](), 0
    while int(hit.sum()) < target_rows and attempts < _MAX_COMPROMISES and weight.sum() > 0:
        if carried:
            window = carried.pop(0)
        else:
            attempts += 1
            window = _new_compromise(rng, int(rng.choice(len(weight), p=weight / weight.sum())), t0, t1)
        drawn = rng.random(len(rows)) < window.share
        covered = np.flatnonzero(_inside(rows, window) & genuine & ~hit & drawn)
        remaining = target_rows - int(hit.sum())
        if len(covered) > remaining:
            covered = covered[np.argsort(rows.epoch[covered], kind="stable")[:remaining]]
            window = Compromise(
                window.merchant, window.start, int(rows.epoch[covered].max()) + 1, window.share
            )
        hit[covered] = True
        windows.append(window)
    still_open = [window for window in windows if window.end > t1]
    return np.flatnonzero(hit), still_open


def _new_compromise(rng: np.random.Generator, merchant: int, t0: int, t1: int) -> Compromise:
    """A compromise of 10-30 days starting in [t0, t1), inside it when the span allows."""
    length = int(rng.uniform(*_COMPROMISE_DAYS) * DAY)
    latest = t1 - length if t1 - t0 > length else t1
    start = int(t0 + rng.random() * (latest - t0))
    return Compromise(merchant, start, start + length, float(rng.uniform(*_COMPROMISE_SHARE)))


def _inside(rows: Rows, window: Compromise) -> np.ndarray:
    inside: np.ndarray = (rows.merchant == window.merchant) & (rows.epoch >= window.start)
    return inside & (rows.epoch < window.end)


def _victims(
    population: Population, rng: np.random.Generator, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A victim per event (any user), and the event number of each of the events' rows."""
    users = rng.integers(0, population.n_users, size=len(sizes))
    return users, np.repeat(np.arange(len(sizes)), sizes)


def _unused_takeover_category(
    population: Population, users: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Per row, a random takeover category outside the user's preferred ones (one always remains)."""
    slots = np.arange(MAX_PREFERRED) < population.n_preferred[users, None]
    preferred = np.where(slots, population.preferred[users], -1)
    used = (preferred[:, :, None] == TAKEOVER_CATEGORIES[None, None, :]).any(axis=1)
    keys = np.where(used, -1.0, rng.random((len(users), len(TAKEOVER_CATEGORIES))))
    return TAKEOVER_CATEGORIES[np.argmax(keys, axis=1)]


def _rows(
    users: np.ndarray, merchants: np.ndarray, amount: np.ndarray, epoch: np.ndarray, pattern: int
) -> Rows:
    """Rows of one pattern; amounts rounded to cents, at least one cent."""
    return Rows(
        user=users.astype(np.int64),
        merchant=merchants.astype(np.int64),
        amount=np.maximum(np.round(amount, 2), 0.01),
        epoch=epoch.astype(np.int64),
        pattern=np.full(len(users), pattern, dtype=np.int8),
    )
