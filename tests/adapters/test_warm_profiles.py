"""The demo seeds profiles with the live population's own history, ending before the live stream."""

from datetime import datetime

from fraudwatch.adapters.dynamodb import DynamoProfileStore
from infra.producer import live_transactions
from infra.stack import warm_profiles


def test_live_users_start_with_their_history_and_no_time_travel(stack):
    truth = list(live_transactions(300, seed=5))
    tables = (stack["ProfilesTableName"], stack["MerchantProfilesTableName"])
    seeded = warm_profiles(None, tables, truth, seed=5)

    live_users = {tx["user_id"] for tx in truth}
    profiles = DynamoProfileStore(*tables).get_many(live_users).users
    assert seeded >= len(live_users)
    assert len(profiles) == len(live_users)  # every live user has a past
    first_live = min(datetime.fromisoformat(tx["timestamp"]).timestamp() for tx in truth)
    assert all(p.last_epoch is not None and p.last_epoch < first_live for p in profiles.values())
    assert all(p.count > 0 and p.checkpoints == {} for p in profiles.values())
