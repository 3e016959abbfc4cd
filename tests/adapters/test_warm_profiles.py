"""The demo seeds profiles with the live population's own history, ending before the live stream, and
the merchants' profiles with the labels of that history known by its end."""

from datetime import datetime

import numpy as np

from fraudwatch.adapters.dynamodb import DynamoProfileStore
from fraudwatch.domain.features import DAY
from fraudwatch.domain.label import DEFAULT_LABEL_DELAY
from fraudwatch.domain.transaction import Transaction
from infra.producer import live_transactions
from infra.seeding import warm_profiles
from training.seeding import merchants_known_by


def test_live_users_and_merchants_start_with_their_history_and_no_time_travel(stack):
    truth = list(live_transactions(300, seed=5))
    tables = (stack["ProfilesTableName"], stack["MerchantProfilesTableName"])
    seeded = warm_profiles(None, tables, truth, seed=5)

    live_users = {tx["user_id"] for tx in truth}
    live_merchants = {tx["merchant_id"] for tx in truth}
    stored = DynamoProfileStore(*tables).get_many(live_users, live_merchants)
    profiles = stored.users
    assert seeded.users >= len(live_users)
    assert len(profiles) == len(live_users)  # every live user has a past
    first_live = min(datetime.fromisoformat(tx["timestamp"]).timestamp() for tx in truth)
    assert all(p.last_epoch is not None and p.last_epoch < first_live for p in profiles.values())
    assert all(p.count > 0 and p.checkpoints == {} for p in profiles.values())

    merchants = stored.merchants
    assert merchants  # live payments go to merchants with labels already known
    assert 0 < seeded.fraud_labels < seeded.labels
    first_live_day = int(first_live // DAY)
    # nothing known from the future
    assert all(row[0] <= first_live_day for m in merchants.values() for row in m.days)
    assert all(m.applied_ids and m.checkpoints == {} for m in merchants.values())
    every = DynamoProfileStore(*tables).get_many((), _all_merchant_ids(stack)).merchants
    assert len(every) == seeded.merchants
    assert sum(row[1] for m in every.values() for row in m.days) == seeded.labels
    assert sum(row[2] for m in every.values() for row in m.days) == seeded.fraud_labels


def _all_merchant_ids(stack) -> list[str]:
    import boto3

    items = boto3.client("dynamodb").scan(TableName=stack["MerchantProfilesTableName"])["Items"]
    return [item["merchant_id"]["S"] for item in items]


def tx(name: str, merchant: str, epoch: float) -> Transaction:
    return Transaction(name, "user-1", merchant, 10.0, "EUR", "", "grocery", epoch, 12)


def test_only_labels_known_by_the_end_count_on_the_day_they_became_known_moved_whole_days():
    start = 20_000 * DAY + 3600
    history = [
        tx("tx-a", "merch-a", start),  # known start + 7 days: by the end
        tx("tx-b", "merch-a", start + DAY),  # known start + 8 days: by the end
        tx("tx-c", "merch-b", start + 2 * DAY),  # known start + 9 days: after the end
        tx("tx-end", "merch-c", start + 8 * DAY),
    ]
    end = start + 8 * DAY
    shift = 30 * DAY

    merchants, labels = merchants_known_by(history, np.array([True, False, True, False]), end, shift)

    assert [label.transaction_id for label in labels] == ["tx-a", "tx-b"]
    assert set(merchants) == {"merch-a"}
    known_day = int((start + DEFAULT_LABEL_DELAY + shift) // DAY)
    assert merchants["merch-a"].days == [[known_day, 1, 1], [known_day + 1, 1, 0]]
    assert list(merchants["merch-a"].applied_ids) == ["tx-a:fraud", "tx-b:genuine"]
