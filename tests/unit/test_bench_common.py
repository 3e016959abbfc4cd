"""The benchmarks' generated records follow the transaction contract and the user mixes they claim."""

import json

import pytest

from bench._common import TransactionStream, p90, table
from fraudwatch.domain.transaction import parse_transaction


def test_every_generated_record_is_valid_under_the_contract_at_its_arrival_time():
    stream = TransactionStream(users=30, seed=3, fraud_rate=0.05)
    records = [r for batch in stream.batches(5) for r in batch]
    parsed = [parse_transaction(r.data, received_at=r.arrival_epoch) for r in records]
    assert len(parsed) == 500
    assert len({tx.transaction_id for tx in parsed}) == 500
    assert {tx.user_id for tx in parsed} <= {s.user_id for s in stream.shoppers}


def test_sequence_numbers_are_56_digits_and_increase_with_time():
    records = TransactionStream(users=10, seed=1).batch(50)
    sequences = [int(r.sequence_number) for r in records]
    epochs = [parse_transaction(r.data).epoch for r in records]
    assert all(len(r.sequence_number) == 56 for r in records)
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == 50
    assert epochs == sorted(epochs)


@pytest.mark.parametrize("distinct", [95, 20, 1])
def test_a_batch_has_exactly_the_distinct_users_asked_for(distinct):
    stream = TransactionStream(users=400, seed=2)
    for batch in stream.batches(3, distinct_users=distinct):
        assert len(batch) == 100
        assert len({json.loads(r.data)["user_id"] for r in batch}) == distinct


def test_labelled_stream_marks_the_fraud_share():
    labels = [fraud for _, fraud in TransactionStream(users=50, seed=4, fraud_rate=0.1).labelled(2000)]
    assert 0.06 < sum(labels) / len(labels) < 0.14


def test_table_aligns_numbers_right_and_text_left():
    lines = table(("name", "n"), [("a", 1.5), ("longer", "+12")]).splitlines()
    assert lines[0].rstrip() == "name    n"
    assert lines[2] == "a       1.50"
    assert lines[3] == "longer   +12"


def test_p90_lies_between_the_two_largest_of_ten():
    assert 9.0 <= p90([float(i) for i in range(1, 11)]) <= 10.0
