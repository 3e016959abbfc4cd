"""Allow, block and review lists: named sets of one contract field's values (merchants, users, ...).

A list's name says what it holds and, for three prefixes, what it does on its own:
`blocked_merchants` holds merchant ids and rejects their payments, `allowed_users` approves a user's,
`review_categories` flags a category's. Any other prefix (`watched_merchants`, `vip_users`) makes a
list that only rules read (`tx.merchant_id in lists.watched_merchants`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from fraudwatch.domain.transaction import FIELDS, Transaction, id_problem


class Action(StrEnum):
    """What a matching rule or list does; the order of PRIORITY decides between several."""

    ALLOW = "allow"
    BLOCK = "block"
    REVIEW = "review"


PRIORITY: tuple[Action, ...] = (Action.ALLOW, Action.BLOCK, Action.REVIEW)

LIST_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "users": "user_id",
        "merchants": "merchant_id",
        "categories": "category",
        "currencies": "currency",
        "transactions": "transaction_id",
    }
)
"""The last word of a list's name, and the contract field its entries are values of."""
LIST_ACTIONS: Mapping[str, Action] = MappingProxyType(
    {"allowed": Action.ALLOW, "blocked": Action.BLOCK, "review": Action.REVIEW}
)
"""The first word of a list's name that makes the list act by itself."""
LIST_NAME = re.compile(rf"([a-z][a-z0-9]{{0,30}})_({'|'.join(LIST_FIELDS)})")
LIST_NAME_RULE = (
    "a list's name is <word>_<" + "|".join(LIST_FIELDS) + ">, the word lower-case letters and digits "
    "(allowed_, blocked_ and review_ lists act by themselves), e.g. blocked_merchants"
)
MAX_REASON_CHARS = 500


class ListEntry(NamedTuple):
    """One value on one list: who put it there, why, when, and until when (epoch seconds; None: no end)."""

    list_name: str
    value: str
    added_by: str
    reason: str
    added_at: float
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        """Whether the entry no longer counts at `now` (DynamoDB's TTL deletes it some time later)."""
        return self.expires_at is not None and self.expires_at <= now


def list_name_problem(name: str) -> str | None:
    """Why `name` cannot name a list, or None."""
    return None if LIST_NAME.fullmatch(name) else f"{name!r}: {LIST_NAME_RULE}"


def list_field(name: str) -> str:
    """The contract field a (valid) list's entries are values of."""
    return LIST_FIELDS[name.rsplit("_", 1)[1]]


def list_action(name: str) -> Action | None:
    """What a (valid) list does by itself, or None for a list only rules read."""
    return LIST_ACTIONS.get(name.split("_", 1)[0])


def entry_problem(entry: ListEntry) -> str | None:
    """Why an entry cannot be stored, or None: its list's name, its value, who and why."""
    if problem := list_name_problem(entry.list_name):
        return problem
    if problem := id_problem(entry.value):
        return f"value {entry.value!r}: {problem}"
    if not entry.added_by.strip():
        return "who added the entry is missing"
    if not entry.reason.strip():
        return "why the entry was added is missing"
    if len(entry.reason) > MAX_REASON_CHARS:
        return f"the reason is over {MAX_REASON_CHARS} characters"
    if entry.expires_at is not None and entry.expires_at <= entry.added_at:
        return "the entry expires before it was added"
    return None


@dataclass(frozen=True, slots=True)
class ListSnapshot:
    """Every list's live values at one time, and what each list does."""

    values: Mapping[str, frozenset[str]]

    @classmethod
    def of(cls, entries: Iterable[ListEntry], now: float) -> ListSnapshot:
        """The lists made of these entries, leaving out those expired at `now` and invalid names."""
        values: dict[str, set[str]] = {}
        for entry in entries:
            if not entry.expired(now) and list_name_problem(entry.list_name) is None:
                values.setdefault(entry.list_name, set()).add(entry.value)
        return cls({name: frozenset(found) for name, found in values.items()})

    @property
    def acting(self) -> tuple[tuple[str, int, Action, frozenset[str]], ...]:
        """The lists that act by themselves: name, the field's index in a Transaction, action, values."""
        return tuple(
            (name, FIELDS.index(list_field(name)), action, found)
            for name, found in sorted(self.values.items())
            if (action := list_action(name)) is not None
        )

    def hits(self, name: str, tx: Transaction) -> list[str]:
        """The transaction's own value of the list's field, if it is on the list: what membership needs."""
        value = str(tx[FIELDS.index(list_field(name))])
        return [value] if value in self.values.get(name, ()) else []


EMPTY_LISTS = ListSnapshot({})
