"""The demo's profiles seeded before it runs: the live population's own history, as production would
have them (computed by `training.seeding`), written to the stack's profile tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from fraudwatch.adapters.dynamodb import DynamoProfileStore
from infra.embedded import StackError
from infra.emulator import client
from infra.events import instant
from infra.producer import live_config
from training.generate import generate_history
from training.pipeline import DEFAULT_SEED


class Seeded(NamedTuple):
    """What the demo seeded from the live population's history."""

    users: int
    merchants: int
    labels: int
    """The labels the merchants' profiles hold: of those known by the history's end, the last days kept."""
    fraud_labels: int


def warm_profiles(
    endpoint_url: str | None, tables: tuple[str, str], truth: Sequence[Mapping[str, Any]], seed: int
) -> Seeded:
    """Seed the profiles with the live population's own history, as production would have them.

    The generator's history of the same population, moved to end before the first live transaction
    (`training.seeding.profiles_before`), written to `tables`: the users' and the merchants' profile
    tables.
    """
    from training.seeding import profiles_before

    frame = generate_history(live_config(len(truth), seed or DEFAULT_SEED))
    profiles, merchants = profiles_before(frame, min(instant(tx) for tx in truth))
    store = DynamoProfileStore(*tables, client("dynamodb", endpoint_url))
    unwritten = store.put_many(list(profiles.values()))
    unwritten_merchants = store.put_merchants(list(merchants.values()))
    if unwritten or unwritten_merchants:
        raise StackError(
            f"{len(unwritten)} user and {len(unwritten_merchants)} merchant profiles could not be written"
        )
    held = [row for merchant in merchants.values() for row in merchant.days]
    return Seeded(
        len(profiles), len(merchants), int(sum(row[1] for row in held)), int(sum(row[2] for row in held))
    )
