"""The sample events are the generator's, and each kind says what its name says."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from fraudwatch.domain.events import parse_event
from fraudwatch.domain.label import Label
from fraudwatch.errors import InvalidRecordError
from infra.events import EVENTS_DIR, write_sample_events


def test_committed_sample_events_are_what_the_generator_makes(tmp_path: Path):
    written = write_sample_events(tmp_path)
    assert [p.name for p in written] == [
        "ordinary.json",
        "fraud.json",
        "malformed.json",
        "mixed.json",
        "labels.json",
    ]
    for path in written:
        committed = json.loads((EVENTS_DIR / path.name).read_text())
        assert json.loads(path.read_text()) == committed, (
            f"events/{path.name} is stale: run `fraudwatch events`"
        )


def records(name: str) -> list[dict[str, Any]]:
    return [r["kinesis"] for r in json.loads((EVENTS_DIR / name).read_text())["Records"]]


def parsed(record: dict[str, Any]) -> Any:
    return parse_event(base64.b64decode(record["data"]), received_at=record["approximateArrivalTimestamp"])


def test_the_label_sample_holds_valid_labels_fraud_and_genuine_keyed_by_merchant():
    sample = records("labels.json")
    labels = [parsed(r) for r in sample]
    assert all(isinstance(label, Label) for label in labels)
    assert [r["partitionKey"] for r in sample] == [label.merchant_id for label in labels]
    assert {label.is_fraud for label in labels} == {True, False}
    epochs = [label.epoch for label in labels]
    assert epochs == sorted(epochs)  # in the order they became known
    sequences = [int(r["sequenceNumber"]) for r in sample]
    assert sequences == sorted(set(sequences))


@pytest.mark.parametrize("name", ["ordinary.json", "fraud.json"])
def test_transaction_samples_parse_as_transactions_keyed_by_user(name: str):
    for record in records(name):
        tx = parsed(record)
        assert not isinstance(tx, Label)
        assert record["partitionKey"] == tx.user_id


def test_every_malformed_sample_is_refused_labels_included():
    fields = []
    for record in records("malformed.json"):
        with pytest.raises(InvalidRecordError) as refused:
            parsed(record)
        fields.append(refused.value.field)
    # the label cases: is_fraud not a boolean, no merchant_id, labelled_at without offset, an unknown event
    assert fields[-4:] == ["is_fraud", "merchant_id", "labelled_at", "event"]
    assert len(fields) == 13
