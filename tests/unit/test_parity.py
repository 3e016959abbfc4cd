"""Parity: the training job's features equal the Lambda's, value by value, on the same history.

The online side is the real ScoringService fed stream records in batches (profiles stored as JSON
between batches, as DynamoDB keeps them): the transactions, and each one's label `LABEL_DELAY` later,
merged in time order as the offline replay merges them (a label first at a tie), and after each
midnight the merchants' activity of the day before, counted from the decisions the service wrote. A
fake model records the rows it is asked to score.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from fraudwatch.domain.activity import count_days, payments_of
from fraudwatch.domain.features import ACTIVITY_FEATURES, DAY, FEATURE_NAMES, LABEL_FEATURES
from fraudwatch.domain.records import StreamRecord
from fraudwatch.domain.scoring import ScoringService
from fraudwatch.domain.transaction import FIELDS, transaction_from_mapping
from infra.events import label_of
from tests.fakes import (
    FakeAlertPublisher,
    FakeDecisionStore,
    FakeModel,
    FakeProfileStore,
    FakeQuarantine,
    tiny_history,
)
from training.features import compute_features, to_transactions
from training.generate import generate_history
from training.io import DataFileError
from training.population.config import GeneratorConfig

SHARD = "shardId-000000000000"
LABEL_DELAY = 2 * 86400.0
"""Short enough that the small histories' merchants get labels back, and merchant features vary."""


def stream(frame: pd.DataFrame, epochs: np.ndarray) -> list[tuple[float, dict[str, object]]]:
    """The frame's transactions and their labels as (arrival, record body), in time order."""
    events: list[tuple[float, int, int, dict[str, object]]] = []
    for i in range(len(frame)):
        tx: dict[str, object] = {name: frame.at[i, name] for name in FIELDS}
        known = float(epochs[i]) + LABEL_DELAY
        label = label_of(
            {**tx, "is_fraud": frame.at[i, "is_fraud"]}, datetime.fromtimestamp(known, UTC).isoformat()
        )
        # At a tie a label comes first; transactions keep the file's order (the replay's stable sort).
        events.append((float(epochs[i]), 1, i, tx))
        events.append((known, 0, i, label))
    events.sort(key=lambda event: event[:3])
    return [(at, body) for at, _, _, body in events]


def online_rows(frame: pd.DataFrame, epochs: np.ndarray, batch_size: int) -> dict[str, tuple[float, ...]]:
    """Replay the frame and its labels through ScoringService; the row each transaction was scored on.

    After each UTC midnight, the merchants' activity of the day just ended is counted from the
    decisions written (`count_days`, as the daily job does) and put on the stream first.
    """
    model = FakeModel()
    decisions = FakeDecisionStore()
    service = ScoringService(
        profiles=FakeProfileStore(),
        decisions=decisions,
        alerts=FakeAlertPublisher(),
        quarantine=FakeQuarantine(),
        model=model,
        clock=lambda: 0.0,
    )
    rows: dict[str, tuple[float, ...]] = {}
    counted = {"labels": 0, "activities": 0}
    sequence = iter(range(1000, 10**9))

    def record(at: float, body: dict[str, object]) -> StreamRecord:
        return StreamRecord(SHARD, str(next(sequence)), json.dumps(body).encode(), arrival_epoch=at)

    def process(batch: list[StreamRecord]) -> None:
        if not batch:
            return
        report = service.process(batch)
        assert not report.failed
        assert not report.quarantined
        counted["labels"] += report.labels
        counted["activities"] += report.activities
        if report.decisions:
            scored = model.batches[-1]
            assert len(scored) == len(report.decisions)
            # The service scores a batch in one call, its decisions in the same order as the rows.
            rows.update(zip((d.transaction_id for d in report.decisions), scored, strict=True))
        batch.clear()

    batch: list[StreamRecord] = []
    day: int | None = None
    for at, body in stream(frame, epochs):
        today = int(at // DAY)
        if day is not None and today > day:
            process(batch)
            for ended in range(day, today):
                summaries = count_days(payments_of(decisions.items.values()), [ended])
                midnight = (ended + 1) * DAY
                process([record(midnight, {"event": "activity", **s.to_mapping()}) for s in summaries])
        day = today
        batch.append(record(at, body))
        if len(batch) == batch_size:
            process(batch)
    process(batch)
    assert counted["labels"] == len(frame)
    assert counted["activities"] > 0
    return rows


def assert_parity(frame: pd.DataFrame, batch_size: int) -> None:
    offline = compute_features(frame.copy(), label_delay=LABEL_DELAY)
    online = online_rows(frame, offline.epochs, batch_size)
    assert len(online) == len(frame)
    online_matrix = np.array([online[tx_id] for tx_id in frame["transaction_id"]], dtype=np.float64)
    assert online_matrix.shape == (len(frame), len(FEATURE_NAMES))
    assert np.isnan(offline.values).any(), "the history should include first transactions (NaN features)"
    for names in (LABEL_FEATURES, ACTIVITY_FEATURES):
        columns = [FEATURE_NAMES.index(name) for name in names]
        assert (offline.values[:, columns] > 0).any(), f"some merchant features should vary: {names}"
    # Exact equality, NaN equal to NaN: the same code must give the same bits.
    np.testing.assert_array_equal(offline.values, online_matrix)


@pytest.mark.parametrize("batch_size", [1, 37, 500])
def test_offline_features_equal_online_features_on_a_hand_made_history(batch_size):
    assert_parity(tiny_history(transactions=1500, users=25, seed=3), batch_size)


def test_offline_features_equal_online_features_on_generated_history():
    config = GeneratorConfig(n_transactions=3000, days=10, seed=11)
    frame = generate_history(config)
    assert frame["is_fraud"].any()
    assert_parity(frame, batch_size=100)


def test_offline_transactions_are_what_the_stream_parser_builds():
    frame = tiny_history(transactions=400, users=10, seed=5)
    offline = to_transactions(frame)
    for tx, record in zip(offline, frame.to_dict("records"), strict=True):
        assert tx == transaction_from_mapping({str(k): v for k, v in record.items()})


STAMPS = [
    "2026-09-01T14:03:07Z",
    "2026-09-01T14:03:07.25+02:00",
    "2026-09-01T23:59:59.999999-05:30",
    "2026-09-01T00:00:00+00:00",
    "2026-09-01 14:03:07+01:00",  # space separator: not the canonical form, parsed row by row
    "20260901T140307+0000",  # basic format: also row by row
    "2026-09-01T14:03+02:00",  # no seconds
    "1969-12-31T23:59:59.5+00:00",  # before the epoch: negative seconds
    "2024-02-29T12:00:00-08:00",
    "0999-05-05T05:05:05+00:00",
]


def test_every_timestamp_form_gives_the_stream_parsers_instant_and_hour():
    frame = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(len(STAMPS))],
            "user_id": "u1",
            "merchant_id": "m1",
            "amount": 10.0,
            "currency": "EUR",
            "timestamp": STAMPS,
            "category": "grocery",
        }
    )
    offline = to_transactions(frame)
    for tx, record in zip(offline, frame.to_dict("records"), strict=True):
        assert tx == transaction_from_mapping({str(k): v for k, v in record.items()})


IMPOSSIBLE = [
    "2026-02-30T10:00:00+00:00",
    "2100-02-29T10:00:00+00:00",
    "2026-09-01T10:00:00+24:00",
    "0000-01-01T00:00:00Z",
    "2026-09-01T10:00:60Z",
]


@pytest.mark.parametrize("stamp", IMPOSSIBLE)
def test_a_canonical_looking_but_impossible_timestamp_is_named(stamp):
    frame = pd.DataFrame(
        {
            "transaction_id": ["t1", "t2"],
            "user_id": "u1",
            "merchant_id": "m1",
            "amount": 10.0,
            "currency": "EUR",
            "timestamp": ["2026-09-01T10:00:00+00:00", stamp],
            "category": "grocery",
        }
    )
    with pytest.raises(DataFileError, match=re.escape(f"f.csv: column 'timestamp', row 2: {stamp!r}")):
        to_transactions(frame, source="f.csv")


def test_a_replay_shared_between_processes_gives_the_same_bits():
    frame = tiny_history(transactions=1500, users=25, seed=4)
    alone = compute_features(frame.copy(), label_delay=LABEL_DELAY, workers=1)
    shared = compute_features(frame.copy(), label_delay=LABEL_DELAY, workers=3)
    np.testing.assert_array_equal(alone.values, shared.values)
    np.testing.assert_array_equal(alone.order, shared.order)
