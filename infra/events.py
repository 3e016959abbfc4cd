"""Lambda-shaped Kinesis events, and the sample events in `events/` made from the generator.

`fraudwatch events` rewrites events/*.json from the generator, so the samples always satisfy the
transaction and label contracts: `sam local invoke ScoringFunction -e events/mixed.json` and the tests
use them.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fraudwatch.domain.activity import ACTIVITY_FIELDS
from fraudwatch.domain.events import ACTIVITY_EVENT, EVENT_FIELD, LABEL_EVENT
from fraudwatch.domain.label import DEFAULT_LABEL_DELAY, LABEL_FIELDS
from fraudwatch.domain.transaction import FIELDS

REGION = "us-east-1"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:123456789012:stream/fraudwatch-transactions"
SHARD = "shardId-000000000000"
EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"


def lambda_record(
    data: bytes,
    *,
    partition_key: str,
    sequence_number: str,
    arrival: float,
    shard_id: str = SHARD,
    stream_arn: str = STREAM_ARN,
    region: str = REGION,
) -> dict[str, Any]:
    """One record as Lambda's Kinesis event source delivers it."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence_number,
            "data": base64.b64encode(data).decode("ascii"),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": f"arn:aws:iam::123456789012:role/{stream_arn.rsplit('/', 1)[-1]}-scoring",
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


def contract_payload(transaction: Mapping[str, Any]) -> bytes:
    """A transaction's stream payload: the contract's fields only (labels never reach the stream)."""
    return json.dumps({name: transaction[name] for name in FIELDS}).encode()


def label_body(
    transaction_id: object, merchant_id: object, is_fraud: object, labelled_at: object
) -> dict[str, Any]:
    """A label as the stream carries it: `"event": "label"` and the label contract's fields, the values
    as given (a test gives wrong ones on purpose)."""
    return {
        EVENT_FIELD: LABEL_EVENT,
        "transaction_id": transaction_id,
        "merchant_id": merchant_id,
        "is_fraud": is_fraud,
        "labelled_at": labelled_at,
    }


def label_of(transaction: Mapping[str, Any], labelled_at: str) -> dict[str, Any]:
    """The label of a labelled transaction (its `is_fraud`), known at `labelled_at` (ISO 8601)."""
    return label_body(
        str(transaction["transaction_id"]),
        str(transaction["merchant_id"]),
        bool(transaction["is_fraud"]),
        labelled_at,
    )


def label_payload(label: Mapping[str, Any]) -> bytes:
    """A label's stream payload: `"event": "label"` and the label contract's fields only."""
    return json.dumps({EVENT_FIELD: LABEL_EVENT, **{name: label[name] for name in LABEL_FIELDS}}).encode()


def activity_payload(activity: Mapping[str, Any]) -> bytes:
    """A day's activity's stream payload: `"event": "activity"` and its contract's fields only."""
    fields = {name: activity[name] for name in ACTIVITY_FIELDS}
    return json.dumps({EVENT_FIELD: ACTIVITY_EVENT, **fields}).encode()


def event_from_transactions(
    transactions: Iterable[Mapping[str, Any]], *, first_sequence: int = 1, delay_s: float = 0.5
) -> dict[str, Any]:
    """A Kinesis event of these transactions, each arriving `delay_s` after its own timestamp."""
    payloads = []
    for tx in transactions:
        payloads.append((contract_payload(tx), str(tx["user_id"]), instant(tx) + delay_s))
    return event_from_payloads(payloads, first_sequence=first_sequence)


def event_from_payloads(
    payloads: Iterable[tuple[bytes, str, float]], *, first_sequence: int = 1
) -> dict[str, Any]:
    """A Kinesis event of (data, partition key, arrival) triples, with increasing sequence numbers."""
    return {
        "Records": [
            lambda_record(data, partition_key=key, sequence_number=str(first_sequence + i), arrival=arrival)
            for i, (data, key, arrival) in enumerate(payloads)
        ]
    }


def instant(tx: Mapping[str, Any]) -> float:
    """A transaction's time, in epoch seconds."""
    return datetime.fromisoformat(str(tx["timestamp"])).timestamp()


def malformed_payloads(valid: Mapping[str, Any], label: Mapping[str, Any]) -> dict[str, bytes]:
    """Records that break the contracts in different ways, built around a valid transaction and label."""
    base = {name: valid[name] for name in FIELDS}
    label_base = json.loads(label_payload(label))

    def changed(**changes: Any) -> bytes:
        return json.dumps({**base, **changes}).encode()

    def changed_label(**changes: Any) -> bytes:
        return json.dumps({**label_base, **changes}).encode()

    return {
        "not-json": b"{this is not json",
        "not-an-object": b"[1, 2, 3]",
        "invalid-utf8": b'{"user_id": "\xff\xfe"}',
        "missing-amount": json.dumps({k: v for k, v in base.items() if k != "amount"}).encode(),
        "negative-amount": changed(amount=-12.5),
        "amount-as-string": changed(amount="12.50"),
        "unknown-currency": changed(currency="XYZ"),
        "timestamp-without-offset": changed(timestamp=str(base["timestamp"])[:19]),
        "user-id-with-control-character": changed(user_id="user\u0007bell"),
        "label-is-fraud-as-string": changed_label(is_fraud="yes"),
        "label-missing-merchant-id": json.dumps(
            {k: v for k, v in label_base.items() if k != "merchant_id"}
        ).encode(),
        "label-labelled-at-without-offset": changed_label(labelled_at=str(label["labelled_at"])[:19]),
        "unknown-event": changed_label(event="chargeback"),
    }


def write_sample_events(out_dir: Path = EVENTS_DIR, seed: int = 11) -> list[Path]:
    """Write ordinary, fraud-looking, malformed, mixed and label events from the generator's history."""
    from training.generate import generate_history
    from training.population.config import GeneratorConfig

    history = generate_history(GeneratorConfig(n_transactions=20_000, days=14, seed=seed))
    rows: list[dict[str, Any]] = [{str(k): v for k, v in r.items()} for r in history.to_dict("records")]
    genuine = [r for r in rows if not r["is_fraud"]]
    fraud = [r for r in rows if r["is_fraud"]]
    by_pattern: dict[str, list[dict[str, Any]]] = {}
    for r in fraud:
        by_pattern.setdefault(str(r["fraud_pattern"]), []).append(r)
    fraud_sample = [r for pattern in sorted(by_pattern) for r in by_pattern[pattern][:4]]
    ordinary = genuine[-50:]
    arrival = instant(ordinary[-1]) + 1
    labelled_at = datetime.fromtimestamp(arrival, UTC).isoformat()
    valid_label = label_of(ordinary[0], labelled_at)
    bad = [
        (data, f"bad-{name}", arrival) for name, data in malformed_payloads(ordinary[0], valid_label).items()
    ]
    mixed_tx = sorted(genuine[-200:-170] + fraud_sample[:10], key=instant)
    mixed = [(contract_payload(r), str(r["user_id"]), instant(r) + 0.5) for r in mixed_tx]
    mixed[5:5] = [(data, key, mixed[4][2]) for data, key, _ in bad[:3]]
    fraud_sorted = sorted(fraud_sample, key=instant)
    events = {
        "ordinary.json": event_from_transactions(ordinary, first_sequence=1),
        "fraud.json": event_from_transactions(fraud_sorted, first_sequence=200),
        "malformed.json": event_from_payloads(bad, first_sequence=500),
        "mixed.json": event_from_payloads(mixed, first_sequence=1000),
        "labels.json": event_from_labels(sample_labelled(by_pattern, genuine), DEFAULT_LABEL_DELAY, 1500),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, event in events.items():
        path = out_dir / name
        path.write_text(json.dumps(event, indent=2) + "\n")
        paths.append(path)
    return paths


def sample_labelled(
    fraud_by_pattern: Mapping[str, list[dict[str, Any]]], genuine: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The first fraud of each pattern and, where its merchant has one, a genuine payment there."""
    labelled = []
    for pattern in sorted(fraud_by_pattern):
        fraud = fraud_by_pattern[pattern][0]
        labelled.append(fraud)
        labelled += [r for r in genuine if r["merchant_id"] == fraud["merchant_id"]][:1]
    return labelled


def event_from_labels(
    transactions: Iterable[Mapping[str, Any]], delay_s: float, first_sequence: int = 1
) -> dict[str, Any]:
    """A Kinesis event of the transactions' labels, each known `delay_s` after its transaction and
    arriving half a second later, in the order they became known, keyed by merchant as producers put them.
    """
    labels = []
    for tx in sorted(transactions, key=instant):
        known = instant(tx) + delay_s
        label = label_of(tx, datetime.fromtimestamp(known, UTC).isoformat())
        labels.append((label_payload(label), str(tx["merchant_id"]), known + 0.5))
    return event_from_payloads(labels, first_sequence=first_sequence)


def _events(args: argparse.Namespace) -> int:
    for path in write_sample_events(Path(args.out), seed=args.seed):
        count = len(json.loads(path.read_text())["Records"])
        print(f"{path}: {count} records")
    return 0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `events`: regenerate the sample Lambda events."""
    from infra.cli import at_least

    parser = subparsers.add_parser(
        "events",
        help="write the sample Kinesis events (ordinary, fraud, malformed, mixed, labels)",
        description="Write Lambda-shaped Kinesis sample events made from the generator, for "
        "`sam local invoke` and `fraudwatch invoke`.",
    )
    parser.add_argument("--out", default=str(EVENTS_DIR), help="output directory (default: events/)")
    parser.add_argument("--seed", type=at_least(0), default=11, help="generator seed (default 11)")
    parser.set_defaults(run=_events)
