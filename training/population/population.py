"""The synthetic population behind the generator: users with habits, merchants with one category each.

Everything is a numpy array indexed by user or merchant number, so the generator can draw a million
transactions with fancy indexing instead of per-row Python. The population depends only on its sizes
and the seed, so the labelled history and the live stream share the same users and merchants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOUR = 3600
DAY = 86400

# name, share of merchants and of genuine preferences, amount scale (x the user's own level)
CATEGORIES: tuple[tuple[str, float, float], ...] = (
    ("grocery", 0.18, 1.4),
    ("restaurants", 0.14, 1.0),
    ("coffee", 0.06, 0.2),
    ("fuel", 0.08, 1.2),
    ("pharmacy", 0.06, 0.6),
    ("clothing", 0.08, 1.8),
    ("online_services", 0.06, 0.5),
    ("entertainment", 0.05, 0.9),
    ("transport", 0.06, 0.6),
    ("utilities", 0.04, 2.5),
    ("home_improvement", 0.04, 2.2),
    ("gaming", 0.03, 0.8),
    ("digital_goods", 0.03, 0.4),
    ("charity", 0.02, 1.0),
    ("electronics", 0.03, 4.0),
    ("travel", 0.02, 6.0),
    ("jewelry", 0.01, 5.0),
    ("gift_cards", 0.01, 1.5),
    ("luxury_goods", 0.01, 6.0),
)
CATEGORY_NAMES: tuple[str, ...] = tuple(name for name, _, _ in CATEGORIES)
CATEGORY_SCALE = np.array([scale for _, _, scale in CATEGORIES])
_CATEGORY_SHARE = np.array([share for _, share, _ in CATEGORIES])
# Genuine users rarely make these their habit; account takeovers go there.
_TAKEOVER_NAMES = ("electronics", "travel", "jewelry", "gift_cards", "luxury_goods")
TAKEOVER_CATEGORIES = np.array([CATEGORY_NAMES.index(name) for name in _TAKEOVER_NAMES])
_RARE_PREFERENCE = 0.15
# Card testers probe cheap online merchants; disjoint from TAKEOVER_CATEGORIES on purpose.
CARD_TESTING_CATEGORIES = np.array(
    [CATEGORY_NAMES.index(name) for name in ("online_services", "digital_goods", "gaming", "charity")]
)

# UTC offset in minutes, currency, share of users: a few zones, currencies of comparable face value.
ZONES: tuple[tuple[int, str, float], ...] = (
    (-480, "USD", 0.22),
    (-360, "USD", 0.12),
    (-300, "USD", 0.23),
    (-300, "CAD", 0.05),
    (0, "GBP", 0.10),
    (60, "EUR", 0.15),
    (120, "EUR", 0.05),
    (480, "SGD", 0.04),
    (600, "AUD", 0.04),
)
ZONE_OFFSETS = np.array([minutes * 60 for minutes, _, _ in ZONES], dtype=np.int64)
ZONE_CURRENCIES: tuple[str, ...] = tuple(currency for _, currency, _ in ZONES)
_ZONE_SHARE = np.array([share for _, _, share in ZONES])

# Relative activity by local hour: mostly daytime and evening, a trickle at night.
_NIGHT_AND_MORNING = (0.6, 0.3, 0.2, 0.15, 0.15, 0.3, 0.8, 1.8, 2.8, 3.5, 4.0, 4.5)
_AFTERNOON_AND_EVENING = (5.5, 5.0, 4.5, 4.3, 4.5, 5.2, 5.8, 5.5, 4.5, 3.2, 2.0, 1.2)
DAY_HOURS = np.array([*_NIGHT_AND_MORNING, *_AFTERNOON_AND_EVENING])
MAX_PREFERRED = 4
MAX_FAVOURITES = 6


@dataclass(frozen=True, slots=True)
class Population:
    """Users and merchants as arrays; user i is `user_ids[i]`, merchant j is `merchant_ids[j]`."""

    user_ids: tuple[str, ...]
    """e.g. "user-000123"."""
    zone: np.ndarray
    """Index into ZONES per user."""
    log_level: np.ndarray
    """Log of the user's usual amount before the category's scale."""
    spread: np.ndarray
    """Lognormal sigma of the user's amounts."""
    preferred: np.ndarray
    """(users, MAX_PREFERRED) category indices; only the first `n_preferred` count."""
    n_preferred: np.ndarray
    favourites: np.ndarray
    """(users, MAX_FAVOURITES) merchant indices in preferred categories; first `n_favourites` count."""
    n_favourites: np.ndarray
    hour_shift: np.ndarray
    """Chronotype: the user's hours are DAY_HOURS shifted by this many hours."""
    activity_cum: np.ndarray
    """Cumulative relative transaction rate of the users (heavy-tailed rates), ending at 1."""
    merchant_ids: tuple[str, ...]
    merchant_category: np.ndarray
    """Merchants are sorted by category, so each category's merchants are one contiguous block."""
    merchant_popularity_cum: np.ndarray
    """Cumulative popularity over all merchants (for sampling within a category block)."""
    category_first: np.ndarray
    """Per category, its first merchant index; category_first[c + 1] is one past its last."""

    @property
    def n_users(self) -> int:
        """Number of users."""
        return len(self.user_ids)

    @property
    def n_merchants(self) -> int:
        """Number of merchants."""
        return len(self.merchant_ids)

    def usual_amount(self, users: np.ndarray) -> np.ndarray:
        """Each user's usual amount: their level times the geometric mean scale of their categories."""
        slots = np.arange(MAX_PREFERRED) < self.n_preferred[users, None]
        log_scale = np.log(CATEGORY_SCALE)[self.preferred[users]]
        mean_log_scale = (log_scale * slots).sum(axis=1) / self.n_preferred[users]
        return np.exp(self.log_level[users] + mean_log_scale)  # type: ignore[no-any-return]


def build_population(n_users: int, n_merchants: int, rng: np.random.Generator) -> Population:
    """Draw a population of `n_users` users and `n_merchants` merchants."""
    merchant_category, popularity_cum, category_first = _merchants(n_merchants, rng)
    preferred, n_preferred = _preferences(n_users, rng)
    n_favourites = rng.integers(3, MAX_FAVOURITES + 1, size=n_users)
    slot = (rng.random((n_users, MAX_FAVOURITES)) * n_preferred[:, None]).astype(np.int64)
    favourite_category = np.take_along_axis(preferred, slot, axis=1)
    favourites = pick_merchant(favourite_category.ravel(), rng, popularity_cum, category_first).reshape(
        n_users, MAX_FAVOURITES
    )
    activity = rng.lognormal(0.0, 0.9, size=n_users)
    return Population(
        user_ids=_names("user", n_users, 6),
        zone=rng.choice(len(ZONES), size=n_users, p=_ZONE_SHARE / _ZONE_SHARE.sum()),
        log_level=rng.normal(np.log(30.0), 0.5, size=n_users),
        spread=rng.uniform(0.3, 0.7, size=n_users),
        preferred=preferred,
        n_preferred=n_preferred,
        favourites=favourites,
        n_favourites=n_favourites,
        hour_shift=rng.integers(-2, 3, size=n_users),
        activity_cum=np.cumsum(activity / activity.sum()),
        merchant_ids=_names("merch", n_merchants, 5),
        merchant_category=merchant_category,
        merchant_popularity_cum=popularity_cum,
        category_first=category_first,
    )


def pick_merchant(
    categories: np.ndarray,
    rng: np.random.Generator,
    popularity_cum: np.ndarray,
    category_first: np.ndarray,
) -> np.ndarray:
    """A merchant of each given category, drawn by popularity."""
    low = np.where(category_first[categories] > 0, popularity_cum[category_first[categories] - 1], 0.0)
    high = popularity_cum[category_first[categories + 1] - 1]
    draw = low + rng.random(len(categories)) * (high - low)
    picked = np.searchsorted(popularity_cum, draw, side="right")
    # Guard the float edge where draw == high: stay inside the category's block.
    clipped: np.ndarray = np.clip(picked, category_first[categories], category_first[categories + 1] - 1)
    return clipped


def _merchants(n_merchants: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Categories (two merchants each at least, the rest by share), sorted; cumulative popularity."""
    n_categories = len(CATEGORIES)
    if n_merchants < 2 * n_categories:
        raise ValueError(f"n_merchants must be at least {2 * n_categories}, got {n_merchants}")
    extra = rng.choice(
        n_categories, size=n_merchants - 2 * n_categories, p=_CATEGORY_SHARE / _CATEGORY_SHARE.sum()
    )
    category = np.sort(np.concatenate([np.repeat(np.arange(n_categories), 2), extra]))
    popularity = rng.lognormal(0.0, 1.0, size=n_merchants)
    first = np.searchsorted(category, np.arange(n_categories + 1))
    return category, np.cumsum(popularity), first


def _preferences(n_users: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """2-4 distinct preferred categories per user, drawn by share (takeover categories rarely)."""
    weight = _CATEGORY_SHARE.copy()
    weight[TAKEOVER_CATEGORIES] *= _RARE_PREFERENCE
    # Weighted sampling without replacement: the smallest exponential keys E/w win (Efraimidis-Spirakis).
    keys = rng.exponential(size=(n_users, len(CATEGORIES))) / weight
    preferred = np.argsort(keys, axis=1)[:, :MAX_PREFERRED]
    return preferred, rng.integers(2, MAX_PREFERRED + 1, size=n_users)


def _names(prefix: str, count: int, width: int) -> tuple[str, ...]:
    """Identifiers like "user-000001", numbered from 1."""
    width = max(width, len(str(count)))
    return tuple(f"{prefix}-{i:0{width}d}" for i in range(1, count + 1))
