"""Duplicates, replays and order, through the real handler on in-process moto.

Kinesis delivers at least once: retries, partial-failure retries from a record in the middle, bisected
halves, and a poller restarting from TRIM_HORIZON all hand the function records it has already
processed. Whatever the redeliveries, profiles, decisions and alerts must end as one clean delivery
leaves them. Records of one user arriving late follow the rule documented in features.py.
"""

from __future__ import annotations

import inspect
import json
import random
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from botocore.awsrequest import AWSResponse, HTTPHeaders

from fraudwatch.adapters.dynamodb import stored_state
from fraudwatch.domain.features import DAY, FEATURE_NAMES, HOUR
from fraudwatch.domain.lineup import FixedLineup
from fraudwatch.domain.profile import MAX_RECENT
from fraudwatch.kinesis_batch import stream_record
from infra.events import contract_payload, label_of, label_payload, lambda_record, malformed_payloads
from infra.invoke import Handler, LocalContext, load_handler
from infra.producer import live_transactions
from tests.e2e.conftest import build_stack, comparable, drain_bodies, scan

SHARDS = ("shardId-000000000000", "shardId-000000000001")
BATCH = 40

Event = dict[str, Any]


def stream_events(transactions: Sequence[dict[str, Any]], batch: int = BATCH) -> list[Event]:
    """Lambda-shaped batches as the mapping would cut them: users hashed onto two shards, each shard's
    records in order with its own sequence numbers, the shards' batches interleaved."""
    return events_of(
        [
            (
                contract_payload(tx),
                str(tx["user_id"]),
                datetime.fromisoformat(tx["timestamp"]).timestamp() + 0.5,
            )
            for tx in transactions
        ],
        batch,
    )


def events_of(payloads: Sequence[tuple[bytes, str, float]], batch: int = BATCH) -> list[Event]:
    """Batches of (data, partition key, arrival) records, hashed onto the shards by partition key."""
    by_shard: dict[str, list[dict[str, Any]]] = {shard: [] for shard in SHARDS}
    for data, key, arrival in payloads:
        shard = SHARDS[zlib.crc32(key.encode()) % len(SHARDS)]
        sequence = str(len(by_shard[shard]) + 1)
        by_shard[shard].append(
            lambda_record(data, partition_key=key, sequence_number=sequence, arrival=arrival, shard_id=shard)
        )
    batches = {s: [rs[i : i + batch] for i in range(0, len(rs), batch)] for s, rs in by_shard.items()}
    events: list[Event] = []
    for i in range(max(len(b) for b in batches.values())):
        events.extend({"Records": b[i]} for b in batches.values() if i < len(b))
    return events


def invoke(handler: Handler, records: list[dict[str, Any]]) -> None:
    assert handler({"Records": records}, LocalContext()) == {"batchItemFailures": []}


def noisy_deliveries(events: list[Event], rng: random.Random) -> tuple[list[list[dict[str, Any]]], int]:
    """Each batch delivered, then redelivered one to three times in total as Lambda may: again whole,
    from a record in the middle to the end (a partial-failure retry), or as two bisected halves.
    Returns the deliveries and how many records were redelivered."""
    deliveries: list[list[dict[str, Any]]] = []
    for event in events:
        records = event["Records"]
        deliveries.append(records)
        for _ in range(rng.randint(0, 2)):
            how = rng.choice(("whole", "tail", "halves"))
            if how == "whole":
                deliveries.append(records)
            elif how == "tail":
                deliveries.append(records[rng.randrange(len(records)) :])
            else:
                half = len(records) // 2
                deliveries.extend([records[:half], records[half:]] if half else [records])
    # Finally the poller restarts with in-memory checkpoints lost: the whole stream once more.
    deliveries.extend(event["Records"] for event in events)
    redelivered = sum(len(d) for d in deliveries) - sum(len(e["Records"]) for e in events)
    return deliveries, redelivered


def outcome(outputs: dict[str, str]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Decisions (without wall-clock fields), profiles' states, and the alert ids sent, sorted."""
    dynamodb = boto3.client("dynamodb")
    decisions = {
        k: comparable(v) for k, v in scan(dynamodb, outputs["DecisionsTableName"], "transaction_id").items()
    }
    profiles = {
        k: stored_state(v) for k, v in scan(dynamodb, outputs["ProfilesTableName"], "user_id").items()
    }
    alerts = drain_bodies(boto3.client("sqs"), outputs["AlertInboxUrl"])
    return decisions, profiles, sorted(a["alert_id"]["StringValue"] for _, a in alerts)


def test_redelivered_batches_end_exactly_as_one_clean_delivery(aws, tiny_bundle, restore_environ):
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    transactions = list(live_transactions(400, seed=21, now=midnight))
    events = stream_events(transactions)
    clean_stack, noisy_stack = build_stack("clean"), build_stack("noisy")
    clean = load_handler(clean_stack, bundle_dir=tiny_bundle)
    noisy = load_handler(noisy_stack, bundle_dir=tiny_bundle)

    for event in events:
        invoke(clean, event["Records"])
    deliveries, redelivered = noisy_deliveries(events, random.Random(21))
    for records in deliveries:
        invoke(noisy, records)

    expected, got = outcome(clean_stack), outcome(noisy_stack)
    assert redelivered > len(transactions)  # more than one redelivery per record on average
    assert len(expected[0]) == len(transactions)
    assert expected[2]  # the clean run raised alerts, so their ids are compared too
    assert got[0] == expected[0]  # every decision, item by item: decision, score, reasons, ...
    assert got[1] == expected[1]  # every profile, including the ids and checkpoints applied
    assert got[2] == expected[2]  # the same alert ids, none sent twice


def everything_once(outputs: dict[str, str]) -> dict[str, Any]:
    """Decisions, user and merchant profiles, alerts received and quarantine messages, in full."""
    dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    decisions, profiles, alerts = outcome(outputs)
    merchants = scan(dynamodb, outputs["MerchantProfilesTableName"], "merchant_id")
    quarantined = drain_bodies(sqs, outputs["QuarantineQueueUrl"])
    return {
        "decisions": decisions,
        "profiles": profiles,
        "merchants": {k: stored_state(v) for k, v in merchants.items()},
        "alerts": alerts,
        "quarantined": sorted(
            (body["shard_id"], body["sequence_number"], body["field"]) for body, _ in quarantined
        ),
    }


def test_every_batch_three_times_then_the_stream_twice_more_does_nothing_twice(
    aws, tiny_bundle, restore_environ
):
    """Issue 11's replay: each batch delivered three times (whole, a tail, bisected halves), then the whole
    stream twice more; payments, labels and malformed records mixed. Nothing lost, nothing doubled."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    transactions = list(live_transactions(300, seed=23, now=midnight))
    payloads = [
        (contract_payload(tx), str(tx["user_id"]), datetime.fromisoformat(tx["timestamp"]).timestamp() + 0.5)
        for tx in transactions
    ]
    last = payloads[-1][2]
    labelled_at = datetime.fromtimestamp(last, UTC).isoformat()
    for tx in transactions[:40]:  # labels of the earliest payments, known by the end of the stream
        label = label_of(tx, labelled_at)
        payloads.append((label_payload(label), str(tx["merchant_id"]), last + 1))
    bad = malformed_payloads(transactions[0], label_of({**transactions[0], "is_fraud": True}, labelled_at))
    rng = random.Random(23)
    for i, data in enumerate(bad.values()):
        payloads.insert(rng.randrange(len(payloads)), (data, f"bad-{i}", last))
    events = events_of(payloads)
    clean_stack, noisy_stack = build_stack("clean"), build_stack("noisy")
    clean = load_handler(clean_stack, bundle_dir=tiny_bundle)
    noisy = load_handler(noisy_stack, bundle_dir=tiny_bundle)

    for event in events:
        invoke(clean, event["Records"])
    deliveries = []
    for event in events:
        records = event["Records"]
        half = len(records) // 2
        tail = records[rng.randrange(len(records)) :]
        halves = [records[:half], records[half:]] if half else [records]
        deliveries.extend([records, tail, *halves])  # three times, once as bisected halves
    deliveries.extend(event["Records"] for _ in range(2) for event in events)
    for records in deliveries:
        invoke(noisy, records)

    expected, got = everything_once(clean_stack), everything_once(noisy_stack)
    assert len(expected["decisions"]) == len(transactions)
    assert expected["alerts"]
    assert expected["merchants"]
    assert len(expected["quarantined"]) == len(bad)
    assert got == expected


# ------------------------------------------------------------------------------------- late records

START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class ModelSpy:
    """The service's model, recording each feature row it scores (by transaction, via the amount)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.rows: list[tuple[float, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def score(self, rows: Sequence[tuple[float, ...]]) -> Any:
        self.rows.extend(rows)
        return self._model.score(rows)


@pytest.fixture
def spied(stack, tiny_bundle, restore_environ) -> tuple[Handler, ModelSpy]:
    handler = load_handler(stack, bundle_dir=tiny_bundle)
    service = inspect.unwrap(handler).__globals__["service"]
    lineup = service.models.current()
    spy = ModelSpy(lineup.champion)
    service._models = FixedLineup(lineup._replace(champion=spy))
    return handler, spy


def tx(name: str, at: timedelta, amount: float, user: str = "user-late") -> dict[str, Any]:
    return {
        "transaction_id": f"tx-{name}",
        "user_id": user,
        "merchant_id": f"merch-{name}",
        "amount": amount,
        "currency": "EUR",
        "timestamp": (START + at).isoformat(),
        "category": "grocery",
    }


def records(transactions: list[dict[str, Any]], first_sequence: int, arrival: float) -> list[dict[str, Any]]:
    return [
        lambda_record(
            contract_payload(t),
            partition_key=t["user_id"],
            sequence_number=str(first_sequence + i),
            arrival=arrival,
        )
        for i, t in enumerate(transactions)
    ]


def instant(transaction: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(transaction["timestamp"])).timestamp()


def features_by_amount(spy: ModelSpy) -> dict[float, dict[str, float]]:
    return {row[0]: dict(zip(FEATURE_NAMES, row, strict=True)) for row in spy.rows}


def profile_state(stack: dict[str, str], user: str = "user-late") -> dict[str, Any]:
    item = boto3.client("dynamodb").get_item(
        TableName=stack["ProfilesTableName"], Key={"user_id": {"S": user}}
    )["Item"]
    state: dict[str, Any] = json.loads(stored_state(item))
    return state


A, B, C = tx("a", timedelta(0), 10.0), tx("b", timedelta(hours=1), 11.0), tx("c", timedelta(hours=2), 12.0)
LATE = tx("late", timedelta(minutes=30), 13.0)
D = tx("d", timedelta(hours=3), 14.0)


def test_a_late_record_is_scored_against_the_profile_as_it_is_then_inserted_in_time_order(spied, stack):
    handler, spy = spied
    arrival = (START + timedelta(hours=3, seconds=1)).timestamp()
    invoke(handler, records([A, B, C], 1, arrival))
    invoke(handler, records([LATE, D], 4, arrival))

    seen = features_by_amount(spy)
    late, after = seen[LATE["amount"]], seen[D["amount"]]
    # Its windows count only what is at or before it: A, 30 minutes earlier; B and C are later.
    assert (late["velocity_1h"], late["velocity_24h"], late["spend_24h"]) == (1.0, 1.0, A["amount"])
    assert late["seconds_since_last"] == 0.0  # never negative
    assert late["history_length"] == 3.0
    # Then it is part of the history of what follows: D's day holds A, LATE, B and C (C, exactly an
    # hour before D, is outside D's half-open hour).
    assert (after["velocity_24h"], after["velocity_1h"], after["seconds_since_last"]) == (4.0, 0.0, HOUR)
    state = profile_state(stack)
    epoch = {
        t["transaction_id"]: datetime.fromisoformat(t["timestamp"]).timestamp() for t in [A, B, C, LATE, D]
    }
    assert state["te"] == [epoch[i] for i in ("tx-a", "tx-late", "tx-b", "tx-c", "tx-d")]  # time order
    assert state["n"] == 5
    assert state["last"] == epoch["tx-d"]


def test_the_newest_time_never_moves_backwards(spied, stack):
    handler, _ = spied
    arrival = (START + timedelta(hours=2, seconds=1)).timestamp()
    invoke(handler, records([A, B, C], 1, arrival))
    invoke(handler, records([LATE], 4, arrival))
    state = profile_state(stack)
    assert state["last"] == datetime.fromisoformat(C["timestamp"]).timestamp()


def test_out_of_order_within_a_batch_follows_the_same_rule_as_across_batches(
    stack, tiny_bundle, restore_environ
):
    """Stream order decides, not timestamps: one batch [A, B, C, LATE, D] or the same split in two give
    the same decisions and profile."""
    arrival = (START + timedelta(hours=3, seconds=1)).timestamp()
    handler = load_handler(stack, bundle_dir=tiny_bundle)
    invoke(handler, records([A, B, C, LATE, D], 1, arrival))
    one_batch = outcome_of_user(stack)
    other = {**stack, **build_stack("split")}
    split = load_handler(other, bundle_dir=tiny_bundle)
    invoke(split, records([A, B, C], 1, arrival))
    invoke(split, records([LATE, D], 4, arrival))
    assert outcome_of_user(other) == one_batch


def outcome_of_user(outputs: dict[str, str]) -> tuple[dict[str, Any], str]:
    dynamodb = boto3.client("dynamodb")
    decisions = {
        k: comparable(v) for k, v in scan(dynamodb, outputs["DecisionsTableName"], "transaction_id").items()
    }
    return decisions, json.dumps(profile_state(outputs))


def test_a_record_a_day_late_sees_only_what_the_profile_still_holds(spied, stack):
    handler, spy = spied
    arrival = (START + timedelta(days=2, seconds=1)).timestamp()
    recent = tx("recent", timedelta(days=2), 20.0)
    old = tx("old", timedelta(hours=1), 30.0)  # 47 hours before the newest
    invoke(handler, records([A, recent], 1, arrival))
    invoke(handler, records([old], 3, arrival))
    state = profile_state(stack)
    assert state["n"] == 3
    assert state["te"] == [datetime.fromisoformat(recent["timestamp"]).timestamp()]  # A and OLD out
    assert state["last"] == datetime.fromisoformat(recent["timestamp"]).timestamp()
    # Scored against the profile as it is: A, an hour before OLD, was forgotten when RECENT came (more
    # than 24 h after it), so OLD's day looks empty; its moments still count every transaction.
    seen = features_by_amount(spy)[old["amount"]]
    assert (seen["velocity_24h"], seen["history_length"], seen["seconds_since_last"]) == (0.0, 2.0, 0.0)


# ---------------------------------------------------------------------------------------- hot user

# Past every bound of the profile (MAX_RECENT, MAX_MERCHANTS, MAX_APPLIED_IDS): beyond, its size is flat.
# tests/unit/test_profile_bounds.py takes the domain through 10,000 transactions in a day.
HOT_TRANSACTIONS = 1_200
ITEM_LIMIT = 400 * 1024


def test_a_hot_user_past_every_bound_keeps_a_flat_profile_through_the_handler(
    stack, tiny_bundle, restore_environ
):
    handler = load_handler(stack, bundle_dir=tiny_bundle)
    start = datetime.now(UTC) - timedelta(days=1)
    step = DAY / 10_000  # the pace of 10,000 a day
    hot = [
        {
            "transaction_id": f"hot-{i:05d}-{'x' * 40}",  # long ids: the ids kept weigh their most
            "user_id": "user-hot",
            "merchant_id": f"merchant-{i:05d}-{'m' * 40}",  # a new merchant each time
            "amount": round(5 + (i * 7919 % 10_000) / 100, 2),
            "currency": "USD",
            "timestamp": (start + timedelta(seconds=i * step)).isoformat(),
            "category": f"category_{i % 50}",
        }
        for i in range(HOT_TRANSACTIONS)
    ]
    arrival = datetime.now(UTC).timestamp()
    sizes = []
    for first in range(0, HOT_TRANSACTIONS, 100):
        invoke(handler, records(hot[first : first + 100], first + 1, arrival))
        sizes.append(len(profile_json(stack)))
    state = json.loads(profile_json(stack))
    assert state["n"] == HOT_TRANSACTIONS
    assert len(state["te"]) == MAX_RECENT
    assert max(sizes) < ITEM_LIMIT / 4  # "well under": a quarter of DynamoDB's item limit at most
    bounded = sizes[MAX_RECENT // 100 - 1 :]  # from the 1,000th transaction on, every bound is reached
    assert max(bounded) - min(bounded) < 0.01 * max(bounded)  # flat


def profile_json(stack: dict[str, str]) -> str:
    item = boto3.client("dynamodb").get_item(
        TableName=stack["ProfilesTableName"], Key={"user_id": {"S": "user-hot"}}
    )["Item"]
    return str(stored_state(item))


# ------------------------------------------------------------------------------ redrive


def test_a_given_up_record_redriven_after_later_ones_of_its_user_is_decided(spied, stack):
    handler, _ = spied
    service = inspect.unwrap(handler).__globals__["service"]
    arrival = (START + timedelta(hours=3, seconds=1)).timestamp()
    unreadable = {"left": 1}

    def throttle(**kwargs: Any) -> Any:
        if unreadable["left"]:
            unreadable["left"] -= 1
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}}
            return AWSResponse("https://dynamodb", 400, HTTPHeaders(), None), error
        return None

    service._profiles._client.meta.events.register("before-call.dynamodb.BatchGetItem", throttle)
    with pytest.raises(BatchProcessingError):  # every record failed: the mapping retries, then gives up
        handler({"Records": records([A], 1, arrival)}, LocalContext())
    invoke(handler, records([B], 2, arrival))  # the stream moves on past the given-up record
    invoke(handler, records([A], 1, arrival))  # an ordinary redelivery: the shard checkpoint is past it
    assert "tx-a" not in scan(boto3.client("dynamodb"), stack["DecisionsTableName"], "transaction_id")

    # `fraudwatch redrive` reads the on-failure range back and scores it in redrive mode
    given_up = [stream_record(KinesisStreamRecord(r)) for r in records([A], 1, arrival)]
    assert [d.transaction_id for d in service.process(given_up, redrive=True).decisions] == ["tx-a"]
    assert "tx-a" in scan(boto3.client("dynamodb"), stack["DecisionsTableName"], "transaction_id")
