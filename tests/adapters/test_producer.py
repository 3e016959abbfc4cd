"""The producer against moto's Kinesis, and with a client that fails chosen records."""

import json
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pandas as pd
import pytest

from fraudwatch.domain.events import parse_event
from fraudwatch.domain.label import LABEL_FIELDS, Label
from fraudwatch.domain.transaction import FIELDS, MAX_AGE_SECONDS
from infra.cli import main
from infra.events import label_of
from infra.producer import (
    ProduceError,
    file_labels,
    file_transactions,
    live_config,
    live_transactions,
    produce,
)
from training.io import DataFileError
from training.population.config import GeneratorConfig

STREAM = "test-transactions"

Failing = Callable[[int, int], Iterable[int]]
"""The indices of a call's records to fail, from the call's number (from 1) and its record count."""


def transaction(i: int, user: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "transaction_id": f"tx-{i:06d}",
        "user_id": f"user-{(i % 7) if user is None else user:03d}",
        "merchant_id": "merch-001",
        "amount": 12.5 + i,
        "currency": "USD",
        "timestamp": (datetime(2026, 11, 30, 12, tzinfo=UTC) + timedelta(seconds=i)).isoformat(),
        "category": "grocery",
        **extra,
    }


class RecordingClient:
    """Forwards to a real client (or accepts everything), failing the indices `fail(call, n)` names."""

    def __init__(self, inner: Any = None, fail: Failing | None = None) -> None:
        self.inner = inner
        self.fail: Failing = fail or (lambda call, n: [])
        self.calls: list[list[dict[str, Any]]] = []

    def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(list(Records))
        failing = set(self.fail(len(self.calls), len(Records)))
        results: list[dict[str, Any]] = [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}
            if i in failing
            else {}
            for i in range(len(Records))
        ]
        accepted = [r for i, r in enumerate(Records) if i not in failing]
        if accepted and self.inner is not None:
            real = iter(self.inner.put_records(StreamName=StreamName, Records=accepted)["Records"])
            results = [r if r else next(real) for r in results]
        else:
            results = [r or {"SequenceNumber": "1", "ShardId": "shardId-000000000000"} for r in results]
        return {"FailedRecordCount": len(failing), "Records": results}


@pytest.fixture
def kinesis(aws: None) -> Any:
    client = boto3.client("kinesis")
    client.create_stream(StreamName=STREAM, ShardCount=2)
    return client


def stream_contents(kinesis: Any) -> list[tuple[str, dict[str, Any]]]:
    """(partition key, payload) of every record, shard by shard, in shard order."""
    out = []
    for shard in kinesis.list_shards(StreamName=STREAM)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]
        out += [(r["PartitionKey"], json.loads(r["Data"])) for r in records]
    return out


def test_records_carry_the_contract_only_keyed_by_user_in_each_users_order(kinesis):
    txs = [transaction(i, is_fraud=i % 3 == 0, fraud_pattern="card_testing") for i in range(60)]

    stats = produce(kinesis, STREAM, txs, progress=False)

    contents = stream_contents(kinesis)
    assert stats.records_put == len(contents) == 60
    assert all(set(payload) == set(FIELDS) for _, payload in contents)
    assert all(key == payload["user_id"] for key, payload in contents)
    for user in {tx["user_id"] for tx in txs}:
        on_stream = [p["transaction_id"] for _, p in contents if p["user_id"] == user]
        assert on_stream == [tx["transaction_id"] for tx in txs if tx["user_id"] == user]
    assert set(stats.put_times) == {tx["transaction_id"] for tx in txs}


def test_calls_carry_at_most_500_records(kinesis):
    client = RecordingClient(kinesis)

    stats = produce(client, STREAM, (transaction(i) for i in range(1203)), progress=False)

    assert [len(c) for c in client.calls] == [500, 500, 203]
    assert stats.calls == 3


def test_calls_stay_under_5_mb():
    client = RecordingClient()
    big = [transaction(i, user=i, merchant_id="m" * 600_000) for i in range(20)]

    produce(client, STREAM, big, progress=False)

    sizes = [sum(len(r["Data"]) + len(r["PartitionKey"]) for r in call) for call in client.calls]
    assert len(client.calls) > 1
    assert max(sizes) <= 5 * 1024 * 1024
    assert sum(len(c) for c in client.calls) == 20


def test_exactly_the_failed_records_are_retried(kinesis):
    client = RecordingClient(kinesis, fail=lambda call, n: [1, 4] if call == 1 else [])
    txs = [transaction(i) for i in range(6)]

    stats = produce(client, STREAM, txs, progress=False, backoff_s=0)

    assert [r["PartitionKey"] for r in client.calls[1]] == [txs[1]["user_id"], txs[4]["user_id"]]
    assert [json.loads(r["Data"])["transaction_id"] for r in client.calls[1]] == ["tx-000001", "tx-000004"]
    assert sorted(p["transaction_id"] for _, p in stream_contents(kinesis)) == [
        tx["transaction_id"] for tx in txs
    ]
    assert (stats.records_put, stats.calls, stats.retried_records) == (6, 2, 2)


def test_it_gives_up_loudly_after_bounded_attempts():
    client = RecordingClient(fail=lambda call, n: [0])

    with pytest.raises(ProduceError, match="1 records were not put after 3 attempts") as caught:
        produce(
            client, STREAM, [transaction(i) for i in range(4)], progress=False, max_attempts=3, backoff_s=0
        )

    assert len(client.calls) == 3
    assert caught.value.stats.records_put == 3
    assert "tx-000000" not in caught.value.stats.put_times


def test_a_record_missing_a_field_is_named():
    bad = transaction(1)
    del bad["amount"]
    with pytest.raises(ValueError, match="record 1: no 'amount'"):
        produce(RecordingClient(), STREAM, [transaction(0), bad], progress=False)


def test_a_rate_spreads_records_over_smaller_calls():
    client = RecordingClient()

    produce(client, STREAM, [transaction(i) for i in range(30)], rate=100, progress=False)

    assert [len(c) for c in client.calls] == [10, 10, 10]


def test_it_stops_between_calls_when_asked():
    stop = threading.Event()

    def stop_after_this_call(call: int, n: int) -> list[int]:
        stop.set()
        return []

    client = RecordingClient(fail=stop_after_this_call)

    stats = produce(client, STREAM, (transaction(i) for i in range(2000)), progress=False, stop=stop)

    assert len(client.calls) == 1
    assert stats.records_put == 500


def test_live_transactions_end_now_with_their_spacing_kept():
    now = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)

    txs = list(live_transactions(500, seed=3, now=now))

    instants = [datetime.fromisoformat(tx["timestamp"]) for tx in txs]
    assert len(txs) == 500
    assert instants[-1] == now
    assert instants == sorted(instants)
    assert now - instants[0] < timedelta(seconds=MAX_AGE_SECONDS)
    assert len({tx["transaction_id"] for tx in txs}) == 500


def test_a_replay_too_long_for_the_lambdas_age_limit_is_refused(tmp_path):
    path = tmp_path / "history.csv"
    rows = [transaction(0), {**transaction(1), "timestamp": "2026-11-01T00:00:00+00:00"}]
    pd.DataFrame(rows).to_csv(path, index=False)

    with pytest.raises(ValueError, match="older than 7 days"):
        file_transactions(path, None)


def test_a_file_is_replayed_in_time_order_ending_now(tmp_path):
    path = tmp_path / "tx.csv"
    pd.DataFrame([transaction(i) for i in (5, 1, 3)]).to_csv(path, index=False)
    now = datetime(2026, 12, 1, tzinfo=UTC)

    txs = file_transactions(path, 2, now=now)

    assert [tx["transaction_id"] for tx in txs] == ["tx-000001", "tx-000003"]
    assert [datetime.fromisoformat(tx["timestamp"]) for tx in txs] == [now - timedelta(seconds=2), now]


def test_the_command_puts_generated_transactions_on_the_stack_stream(kinesis, tmp_path, capsys):
    outputs = tmp_path / "stack.json"
    outputs.write_text(json.dumps({"outputs": {"StreamName": STREAM}}))

    code = main(["produce", "--outputs", str(outputs), "--count", "40", "--seed", "5"])

    assert code == 0
    assert len(stream_contents(kinesis)) == 40
    assert "put 40 transactions" in capsys.readouterr().out


def test_the_command_names_a_missing_stream(tmp_path, capsys):
    code = main(["produce", "--outputs", str(tmp_path / "none.json"), "--count", "5"])

    assert code == 2
    assert "--stream" in capsys.readouterr().err


def test_a_large_live_count_still_fits_the_lambdas_age_limit_with_more_users():
    now = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)

    txs = list(live_transactions(12_000, seed=3, now=now))

    first = datetime.fromisoformat(txs[0]["timestamp"])
    assert len(txs) == 12_000
    assert now - first < timedelta(seconds=MAX_AGE_SECONDS)
    assert live_config(12_000, seed=3).n_transactions > GeneratorConfig(seed=3).n_transactions


def test_the_command_replays_a_whole_file(kinesis, tmp_path):
    path = tmp_path / "tx.csv"
    pd.DataFrame([transaction(i, is_fraud=False) for i in range(25)]).to_csv(path, index=False)

    code = main(
        ["produce", "--stream", STREAM, "--file", str(path), "--outputs", str(tmp_path / "none.json")]
    )

    assert code == 0
    payloads = [p for _, p in stream_contents(kinesis)]
    assert sorted(p["transaction_id"] for p in payloads) == [f"tx-{i:06d}" for i in range(25)]
    assert all("is_fraud" not in p for p in payloads)


# ------------------------------------------------------------------------------------------ labels

NOW = datetime.now(UTC).replace(microsecond=0)


def label(i: int, merchant: int, is_fraud: bool) -> dict[str, Any]:
    tx = {"transaction_id": f"tx-{i:06d}", "merchant_id": f"merch-{merchant:03d}", "is_fraud": is_fraud}
    return label_of(tx, NOW.isoformat())


def test_labels_are_keyed_by_merchant_and_carry_the_label_contract_beside_transactions(kinesis):
    labels = [label(i, merchant=i % 4, is_fraud=i % 3 == 0) for i in range(40)]
    mixed = [transaction(i) for i in range(40, 50)] + labels

    stats = produce(kinesis, STREAM, mixed, progress=False)

    contents = stream_contents(kinesis)
    assert stats.records_put == len(contents) == 50
    on_stream = [(key, payload) for key, payload in contents if payload.get("event") == "label"]
    assert len(on_stream) == 40
    assert all(key == payload["merchant_id"] for key, payload in on_stream)
    assert all(set(payload) == {"event", *LABEL_FIELDS} for _, payload in on_stream)
    for key, payload in on_stream:  # what the Lambda will read: a valid label
        parsed = parse_event(json.dumps(payload).encode(), received_at=NOW.timestamp())
        assert isinstance(parsed, Label)
        assert parsed.merchant_id == key
    for merchant in {lb["merchant_id"] for lb in labels}:  # one shard per merchant, in the merchant's order
        assert [p["transaction_id"] for k, p in on_stream if k == merchant] == [
            lb["transaction_id"] for lb in labels if lb["merchant_id"] == merchant
        ]
    assert all(key == payload["user_id"] for key, payload in contents if "event" not in payload)


def test_failed_labels_are_retried_like_transactions(kinesis):
    client = RecordingClient(kinesis, fail=lambda call, n: [0, 2] if call == 1 else [])
    labels = [label(i, merchant=i, is_fraud=bool(i % 2)) for i in range(4)]

    stats = produce(client, STREAM, labels, progress=False, backoff_s=0)

    assert [r["PartitionKey"] for r in client.calls[1]] == ["merch-000", "merch-002"]
    assert sorted(p["transaction_id"] for _, p in stream_contents(kinesis)) == [
        f"tx-{i:06d}" for i in range(4)
    ]
    assert (stats.records_put, stats.retried_records) == (4, 2)


def test_a_label_missing_a_field_is_named():
    bad = label(1, merchant=1, is_fraud=True)
    del bad["merchant_id"]
    with pytest.raises(ValueError, match="record 0: no 'merchant_id'"):
        produce(RecordingClient(), STREAM, [bad], progress=False)


def labelled_file(tmp_path, rows: int = 6) -> Any:
    path = tmp_path / "labelled.csv"
    pd.DataFrame(
        [transaction(i, merchant_id=f"merch-{i % 2:03d}", is_fraud=i % 3 == 0) for i in range(rows)]
    ).to_csv(path, index=False)
    return path


def test_a_labelled_file_gives_one_label_per_row_known_when_asked(tmp_path):
    known = NOW - timedelta(days=2)

    labels = file_labels(labelled_file(tmp_path), None, known)

    assert [lb["transaction_id"] for lb in labels] == [f"tx-{i:06d}" for i in range(6)]
    assert [lb["is_fraud"] for lb in labels] == [i % 3 == 0 for i in range(6)]
    assert all(type(lb["is_fraud"]) is bool for lb in labels)  # JSON true/false, never 1/0
    assert {lb["labelled_at"] for lb in labels} == {known.isoformat()}
    assert [lb["merchant_id"] for lb in labels] == [f"merch-{i % 2:03d}" for i in range(6)]
    assert len(file_labels(labelled_file(tmp_path), 4, known)) == 4


def test_labels_the_lambda_would_quarantine_are_refused_before_any_is_put(tmp_path):
    with pytest.raises(ValueError, match="more than 7 days in the past"):
        file_labels(labelled_file(tmp_path), None, NOW - timedelta(days=8))
    with pytest.raises(ValueError, match="more than an hour in the future"):
        file_labels(labelled_file(tmp_path), None, NOW + timedelta(hours=2))
    unlabelled = tmp_path / "unlabelled.csv"
    pd.DataFrame([transaction(i) for i in range(3)]).to_csv(unlabelled, index=False)
    with pytest.raises(DataFileError, match="is_fraud"):
        file_labels(unlabelled, None, NOW)


def test_the_command_puts_a_files_labels_on_the_stream(kinesis, tmp_path, capsys):
    known = (NOW - timedelta(hours=5)).isoformat()
    args = ["produce", "--stream", STREAM, "--outputs", str(tmp_path / "none.json")]

    code = main([*args, "--labels", str(labelled_file(tmp_path)), "--labelled-at", known])

    assert code == 0
    assert "put 6 labels" in capsys.readouterr().out
    contents = stream_contents(kinesis)
    assert sorted(p["transaction_id"] for _, p in contents) == [f"tx-{i:06d}" for i in range(6)]
    assert all(p["event"] == "label" and p["labelled_at"] == known for _, p in contents)
    assert all(key == p["merchant_id"] for key, p in contents)


def test_the_command_explains_bad_label_options(kinesis, tmp_path, capsys):
    args = ["produce", "--stream", STREAM, "--outputs", str(tmp_path / "none.json")]
    path = str(labelled_file(tmp_path))

    with pytest.raises(SystemExit) as exited:
        main([*args, "--labels", path, "--labelled-at", "2026-11-30T10:00:00"])
    assert exited.value.code == 2
    assert "needs a UTC offset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--labels", path, "--file", path])
    assert "not allowed with" in capsys.readouterr().err
    assert main([*args, "--labelled-at", NOW.isoformat()]) == 2
    assert "--labelled-at needs --labels" in capsys.readouterr().err
    assert main([*args, "--labels", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert stream_contents(kinesis) == []
