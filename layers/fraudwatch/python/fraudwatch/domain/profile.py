"""A user's behavioural profile: everything the features need, bounded in size.

Bounds, and what happens at them:

* `recent` keeps (time, amount) of the user's transactions of the last 24 h before the newest one,
  at most MAX_RECENT of them; beyond that the oldest are dropped, so `velocity_24h` and `spend_24h`
  saturate at the most recent MAX_RECENT transactions (a user doing more than that in a day is
  flagged long before).
* `days` keeps the count and the total amount of each UTC day's transactions, at most KEPT_DAYS + 1
  days of them; past that, those more than KEPT_DAYS days before the newest are dropped. The 7- and
  30-day windows are made of these.
* `categories` and `merchants` remember the MAX_CATEGORIES / MAX_MERCHANTS most recently used; one
  not used for longer than that counts as new again.
* `checkpoints` keeps the highest Kinesis sequence number applied per shard, which makes any redelivery
  of a record a no-op however old; `applied_ids` remembers the user's last MAX_APPLIED_IDS transaction
  ids, which catches the same transaction put twice under new sequence numbers (a producer's retry).

At these bounds a profile serialises to about 28 KB of JSON with ids like the generator's (10,000
transactions in a day at 500 merchants), a fourteenth of DynamoDB's 400 KB item limit; the worst case,
with the longest ids, is measured in docs/reliability.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from fraudwatch.domain.records import at_or_before

MAX_RECENT = 1000
MAX_CATEGORIES = 32
MAX_MERCHANTS = 200
MAX_APPLIED_IDS = 64
KEPT_DAYS = 30
"""Day buckets kept before the newest day: enough for a 30-day window of complete days."""


class RecentKeys:
    """At most `bound` keys in the order they were last used, oldest first, as one space-joined text.

    A profile's key sets (its categories, merchants and applied record ids) are read, used by a record
    or two and written back in every batch. Split into hundreds of strings on each read and joined on
    each write, they cost more than all the features together (a profile of 60 ids and 18 merchants:
    6.6 of its 17.7 µs decode). So the stored text stays as it was read: a key is looked up as a
    substring between spaces, a key used since the read is cut out of the text and kept apart, newest
    last, and the text is joined again once, when the profile is written. The order is that of an
    insertion-ordered set whose used keys move to the end, the oldest dropped past `bound`: the stored
    words, oldest first, then those used since. Keys never contain a space (transaction.id_problem).

    A record asks whether it knows a key, then touches it (its features, then its update): the
    position the question found is kept for the touch that follows, which cuts the key out there
    rather than searching the text twice more (a merchant of 200: 1.2 -> 0.5 µs).
    """

    __slots__ = ("_count", "_found", "_stored", "_used", "bound")

    def __init__(self, bound: int, keys: Iterable[str] = ()) -> None:
        self.bound = bound
        self._stored = " "
        """The stored words not used since the read, between spaces: " a b c " (" ": none)."""
        self._count = 0
        """How many words `_stored` holds, or -1 until counted: counting a set of 200 merchants' ids costs
        more than the rest of its read, and only a key new to the set needs the count."""
        self._used: dict[str, None] = {}
        self._found: tuple[str, int] = ("", -1)
        """The last key looked for in `_stored` and where its " key " starts there (-1: absent), until
        `_stored` changes."""
        for key in keys:
            self.touch(key)

    @classmethod
    def from_joined(cls, bound: int, joined: str) -> RecentKeys:
        """The keys of `joined` (as `joined()` wrote them: at most `bound` distinct words), held as read."""
        keys = cls(bound)
        if joined:
            keys._stored = f" {joined} "
            keys._count = -1
        return keys

    def joined(self) -> str:
        """The keys as the profile stores them, oldest first."""
        stored = self._stored[1:-1]
        if not self._used:
            return stored
        used = " ".join(self._used)
        return f"{stored} {used}" if stored else used

    def touch(self, key: str) -> None:
        """Make `key` the most recent, dropping the oldest key when there are more than `bound`."""
        used = self._used
        if key in used:
            del used[key]
            used[key] = None
            return
        at = self._stored_at(key)
        self._found = ("", -1)
        used[key] = None
        if at >= 0:
            stored = self._stored
            self._stored = stored[: at + 1] + stored[at + len(key) + 2 :]
            if self._count > 0:
                self._count -= 1
            return
        if self._stored_count() + len(used) > self.bound:
            if self._count:
                self._stored = self._stored[self._stored.index(" ", 1) :]
                self._count -= 1
            else:
                del used[next(iter(used))]

    def _stored_at(self, key: str) -> int:
        """Where " key " starts in `_stored`, or -1; remembered until `_stored` changes."""
        found = self._found
        if found[0] == key and key:
            return found[1]
        at = self._stored.find(f" {key} ")
        self._found = (key, at)
        return at

    def _stored_count(self) -> int:
        if self._count < 0:
            self._count = self._stored.count(" ") - 1
        return self._count

    def __contains__(self, key: object) -> bool:
        return key in self._used or (isinstance(key, str) and self._stored_at(key) >= 0)

    def __iter__(self) -> Iterator[str]:
        yield from words(self._stored[1:-1])
        yield from self._used

    def __reversed__(self) -> Iterator[str]:
        return reversed(list(self))

    def __len__(self) -> int:
        return self._stored_count() + len(self._used)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecentKeys):
            return NotImplemented
        return self.bound == other.bound and self.joined() == other.joined()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"RecentKeys({self.bound}, {list(self)!r})"


class Ledger:
    """What makes applying a record idempotent: per-shard checkpoints and a ring of recent ids.

    Mixed into a profile dataclass that has `applied_ids` (RecentKeys) and `checkpoints`. Sequence numbers
    stay the decimal text Kinesis writes (`records.at_or_before` compares them).
    """

    __slots__ = ()
    applied_ids: RecentKeys
    checkpoints: dict[str, str]

    def has_applied(self, record_id: str, shard_id: str | None, sequence_number: str | None) -> bool:
        """True when this record (or the same id, delivered twice) is already in the profile."""
        return self.is_checkpointed(shard_id, sequence_number) or record_id in self.applied_ids

    def mark_applied(self, record_id: str, shard_id: str | None, sequence_number: str | None) -> None:
        """Remember a record so that its redelivery changes nothing."""
        self.applied_ids.touch(record_id)
        self.checkpoint(shard_id, sequence_number)

    def is_checkpointed(self, shard_id: str | None, sequence_number: str | None) -> bool:
        """True when the shard's checkpoint is at or past this sequence number."""
        if shard_id is None or sequence_number is None:
            return False
        checkpoint = self.checkpoints.get(shard_id)
        return checkpoint is not None and at_or_before(sequence_number, checkpoint)

    def checkpoint(self, shard_id: str | None, sequence_number: str | None) -> None:
        """Move the shard's checkpoint to this sequence number, never backwards."""
        if shard_id is None or sequence_number is None:
            return
        current = self.checkpoints.get(shard_id)
        if current is None or at_or_before(current, sequence_number):
            self.checkpoints[shard_id] = sequence_number


DayRows = list[list[int | float]]
"""A profile's day buckets: one row a UTC day, `[day number, *values]`, in the order the days first came
(newest last, but for a late record's day). Typed `int | float` rather than `float` (which admits ints
too): compiled by mypyc (layers/fraudwatch/compile.py), code that reads a `float` turns an int into a
float, and a row's day number and counts are integers, and stored as such."""


@dataclass(slots=True, init=False)
class UserProfile(Ledger):
    """The state kept per user; `mean`/`m2` are Welford's running moments of the amount."""

    user_id: str
    count: int
    mean: float
    m2: float
    last_epoch: float | None
    recent_epochs: list[float]
    recent_amounts: list[float]
    categories: RecentKeys
    merchants: RecentKeys
    days: DayRows
    """One row a UTC day: [day number, transactions, total amount]; only the last until `all_days()`."""
    applied_ids: RecentKeys
    checkpoints: dict[str, str]
    windows: tuple[int, tuple[float, ...]] | None = field(compare=False, repr=False)
    """The long windows' features of one day, cached, and stored with the profile: they read only the
    days before theirs, so they change only at midnight (or with a record of an earlier day, which drops
    them)."""
    older_days: str | None = field(compare=False, repr=False)
    """The stored rows before the last of `days`, as their JSON text until a record needs them."""
    version: int = field(compare=False)
    """The stored item's version when read (0: none stored yet); a write is conditional on it, since the
    stream and the inline API both write user profiles (DESIGN.md, decision 6). Kept beside the state,
    not in it: two profiles are equal by content whatever writes led to them."""

    def __init__(
        self,
        user_id: str,
        count: int = 0,
        mean: float = 0.0,
        m2: float = 0.0,
        last_epoch: float | None = None,
        recent_epochs: list[float] | None = None,
        recent_amounts: list[float] | None = None,
        categories: RecentKeys | None = None,
        merchants: RecentKeys | None = None,
        days: DayRows | None = None,
        applied_ids: RecentKeys | None = None,
        checkpoints: dict[str, str] | None = None,
        windows: tuple[int, tuple[float, ...]] | None = None,
        older_days: str | None = None,
        version: int = 0,
    ) -> None:
        """A new user's profile, or a stored one's state (None: empty).

        Written out, not generated by the dataclass: compiled by mypyc, a generated `__init__` stays
        interpreted: 8.3k instructions to build a profile just read (`from_json` calls the class by its
        name, not `cls`, so that the call is native too)."""
        self.user_id = user_id
        self.count = count
        self.mean = mean
        self.m2 = m2
        self.last_epoch = last_epoch
        self.recent_epochs = [] if recent_epochs is None else recent_epochs
        self.recent_amounts = [] if recent_amounts is None else recent_amounts
        self.categories = RecentKeys(MAX_CATEGORIES) if categories is None else categories
        self.merchants = RecentKeys(MAX_MERCHANTS) if merchants is None else merchants
        self.days = [] if days is None else days
        self.applied_ids = RecentKeys(MAX_APPLIED_IDS) if applied_ids is None else applied_ids
        self.checkpoints = {} if checkpoints is None else checkpoints
        self.windows = windows
        self.older_days = older_days
        self.version = version

    def to_json(self) -> str:
        """The compact JSON the profile store keeps.

        Key sets are stored as one space-joined string each (RecentKeys): encoding and decoding one
        string is an order of magnitude cheaper than a list of a hundred. orjson rather than json: a
        fourth of the CPU to encode these profiles, a third to parse them.
        """
        return orjson.dumps(
            {
                "n": self.count,
                "mean": self.mean,
                "m2": self.m2,
                "last": self.last_epoch,
                "te": self.recent_epochs,
                "ta": self.recent_amounts,
                "cat": self.categories.joined(),
                "mer": self.merchants.joined(),
                **self.stored_days(),
                "w": None if self.windows is None else [self.windows[0], *map(_nan_to_none, self.windows[1])],
                "ids": self.applied_ids.joined(),
                "cp": self.checkpoints,
            }
        ).decode()

    @classmethod
    def from_json(cls, user_id: str, text: str) -> UserProfile:
        """Rebuild a profile from `to_json`'s output (or from that of a version before the day rows were
        split, whose "d" is a list of every row, and which has no windows)."""
        state = load_state(text)
        days, older = state["d"], None
        if type(days) is str:
            days, older = ([state["dn"]] if state["dn"] else []), state["d"]
        stored_windows = state.get("w")
        return UserProfile(
            user_id=user_id,
            count=state["n"],
            mean=state["mean"],
            m2=state["m2"],
            last_epoch=state["last"],
            recent_epochs=state["te"],
            recent_amounts=state["ta"],
            categories=RecentKeys.from_joined(MAX_CATEGORIES, state["cat"]),
            merchants=RecentKeys.from_joined(MAX_MERCHANTS, state["mer"]),
            days=days,
            older_days=older,
            applied_ids=RecentKeys.from_joined(MAX_APPLIED_IDS, state["ids"]),
            checkpoints=state["cp"],
            windows=None if stored_windows is None else _windows_from_json(stored_windows),
        )

    def all_days(self) -> DayRows:
        """Every day row, the stored older ones read first if they are still text.

        A month of rows is most of a user profile's JSON (93 of its 110 numbers): parsing them on every
        read and writing them back on every write cost 6 µs a profile, for rows that a record of the
        same day never reads (it counts in the last row, and the windows made of the others are stored
        with the profile). So the rows before the last are stored as one JSON string, read only when a
        record needs them (a new day, a late record, or windows to compute), written back as read
        while unread.
        """
        if self.older_days is not None:
            self.days[:0] = orjson.loads(self.older_days)
            self.older_days = None
        return self.days

    def stored_days(self) -> dict[str, object]:
        """The day rows as the profile stores them: those before the last as JSON text ("d"), the last
        ("dn")."""
        older = self.older_days if self.older_days is not None else orjson.dumps(self.days[:-1]).decode()
        return {"d": older, "dn": self.days[-1] if self.days else None}

    def __eq__(self, other: object) -> bool:
        """Equal by content: every field the dataclass compares, the day rows whether read yet or not."""
        if not isinstance(other, UserProfile):
            return NotImplemented
        self.all_days()
        other.all_days()
        return all(getattr(self, name) == getattr(other, name) for name in _COMPARED)


_COMPARED = tuple(f.name for f in fields(UserProfile) if f.compare)


def _nan_to_none(value: float) -> float | None:
    """JSON has no NaN (orjson writes null): a window's mean over no transaction."""
    return None if value != value else value


def _windows_from_json(stored: list[float | None]) -> tuple[int, tuple[float, ...]]:
    day, *values = stored
    return int(day), tuple(NAN if value is None else value for value in values)  # type: ignore[arg-type]


NAN = float("nan")


def day_row(rows: DayRows, day: int) -> list[int | float] | None:
    """The row of UTC day `day`, or None: looked for from the newest."""
    for row in reversed(rows):
        if row[0] == day:
            return row
    return None


def load_state(text: str) -> dict[str, Any]:
    """A stored profile's JSON (user or merchant), its checkpoints as decimal text.

    Profiles written before checkpoints became strings hold them as JSON integers, which orjson reads
    as floats beyond 64 bits, digits lost: such a profile is read again, exactly, by the standard
    library, until its next write stores it in the current format.
    """
    state: dict[str, Any] = orjson.loads(text)
    checkpoints: dict[str, Any] = state["cp"]
    for sequence_number in checkpoints.values():
        if type(sequence_number) is not str:
            exact = json.loads(text)["cp"]
            state["cp"] = {shard_id: str(exact[shard_id]) for shard_id in exact}
            break
    return state


def words(joined: str) -> list[str]:
    """The words of a space-joined key set."""
    return joined.split(" ") if joined else []
