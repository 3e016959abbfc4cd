"""AWS calls per batch of 100 records through the real adapters on moto, against the naive way.

Ours: the handler's own wiring (`fraudwatch.wiring.build_service`: BatchGetItem for the batch's user
and merchant profiles together, BatchWriteItem for decisions and merchant profiles, TransactWriteItems
for user profiles (conditional on the version read, 100 a call),
PublishBatch for alerts, SendMessageBatch for quarantine). Naive: per transaction GetItem (user),
GetItem (merchant), PutItem (user), PutItem (decision), and one Publish per alert; per label GetItem
and PutItem (merchant). Calls are counted with botocore's `provide-client-params` event, once per API
call a client makes (botocore's own retries of a call are not counted again). Tables are created
with template.yaml's key schemas. Labels are of transactions seen in earlier batches, one per
merchant, as a chargeback feed sends them (partition key = merchant id).

Run: .venv/bin/python -m bench.aws_calls
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench._common import REPO_ROOT, Bundle, TransactionStream, machine, model_bundle, table, verdict
from bench.naive_handler import NaiveHandler
from fraudwatch.domain.records import StreamRecord
from infra.events import label_of, label_payload
from infra.messaging import create_queue, create_topic

BUDGET = 10
BATCH = 100
REGION = "us-east-1"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


@dataclass(frozen=True, slots=True)
class Mix:
    """A kind of batch: how many distinct users its 100 records come from, how many are labels."""

    name: str
    pool: int
    distinct_users: int | None
    malformed: int = 0
    labels: int = 0


MIXES = (
    Mix("95 distinct users", pool=400, distinct_users=95),
    Mix("20 distinct users", pool=20, distinct_users=20),
    Mix("95 users + 1 malformed record", pool=400, distinct_users=95, malformed=1),
    Mix("95 users, 99 tx + 1 label (worst case)", pool=400, distinct_users=95, labels=1),
    Mix("95 users, 90 tx + 10 labels", pool=400, distinct_users=95, labels=10),
)


@dataclass
class CallCounter:
    """Counts API calls by operation (and by table for DynamoDB batch operations)."""

    tables: dict[str, str] = field(default_factory=dict)
    """Short labels of table names (names not in it are shown as they are)."""
    calls: Counter[str] = field(default_factory=Counter)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        """botocore `provide-client-params` handler: one call per invocation."""
        label = model.name
        tables = params.get("RequestItems") or {
            action["TableName"]: None for item in params.get("TransactItems", []) for action in item.values()
        }
        table_name = params.get("TableName")
        if tables:
            label += f" ({', '.join(sorted(self.tables.get(t, t) for t in tables))})"
        elif table_name:
            label += f" ({self.tables.get(table_name, table_name)})"
        self.calls[label] += 1

    def take(self) -> Counter[str]:
        """The calls since the last take, and reset."""
        taken, self.calls = self.calls, Counter()
        return taken


def main(argv: Sequence[str] | None = None) -> int:
    """Count both ways for every mix and print the tables."""
    args = _parser().parse_args(argv)
    os.environ.update(FAKE_ENV)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)
    bundle = model_bundle()
    print("AWS calls per batch of 100 records (reads + writes + alerts), real adapters on moto")
    print(f"machine: {machine()}")
    print(f"model:   {bundle.origin}")
    print("tables:  key schemas from template.yaml")
    print(
        f"batches: {args.warmup_batches} warm-up (not counted), then {args.batches} counted "
        f"(naive: {args.naive_batches}) per mix\n"
    )
    summary = []
    for mix in MIXES:
        ours, naive, alerts, keys = _measure(mix, bundle, args)
        summary.append((mix, ours, naive, alerts))
        _print_mix(mix, ours, naive, alerts, keys)
    _print_summary(summary)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="counted batches per mix (default 20)")
    parser.add_argument("--warmup-batches", type=int, default=3, help="batches that build profiles first")
    parser.add_argument("--naive-batches", type=int, default=5, help="counted naive batches per mix")
    return parser


# ---------------------------------------------------------------- the stack on moto


def table_definitions() -> dict[str, dict[str, Any]]:
    from infra.template import load_template, resources_of_type

    tables = resources_of_type(load_template(REPO_ROOT / "template.yaml"), "AWS::DynamoDB::Table")
    return {name: resource["Properties"] for name, resource in tables.items()}


def table_labels(env: dict[str, str]) -> dict[str, str]:
    """Short names of the function's tables, as the counts show them."""
    return {
        env["PROFILES_TABLE"]: "profiles",
        env["MERCHANT_PROFILES_TABLE"]: "merchants",
        env["DECISIONS_TABLE"]: "decisions",
    } | ({env["LABELS_TABLE"]: "labels"} if "LABELS_TABLE" in env else {})


def _create_stack(session: Any) -> dict[str, str]:
    """Tables, topic and quarantine queue; returns the handler's environment."""
    dynamodb = session.client("dynamodb")
    names = {}
    for logical_id, props in table_definitions().items():
        names[logical_id] = f"bench-{logical_id}"
        args = {
            key: props[key]
            for key in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")
            if key in props
        }
        dynamodb.create_table(TableName=names[logical_id], BillingMode="PAY_PER_REQUEST", **args)
    topic = create_topic(session.client("sns"), "AlertsTopic", "bench-AlertsTopic")
    queue = create_queue(session.client("sqs"), "QuarantineQueue", "bench-QuarantineQueue")
    return {
        "PROFILES_TABLE": names["ProfilesTable"],
        "MERCHANT_PROFILES_TABLE": names["MerchantProfilesTable"],
        "DECISIONS_TABLE": names["DecisionsTable"],
        "LABELS_TABLE": names["LabelsTable"],
        "ALERTS_TOPIC_ARN": topic,
        "QUARANTINE_QUEUE_URL": queue,
    }


# ---------------------------------------------------------------- measuring


def _batches(
    mix: Mix, warmup: int, count: int, seed: int
) -> tuple[list[list[StreamRecord]], list[list[StreamRecord]]]:
    stream = TransactionStream(users=mix.pool, seed=seed, fraud_rate=0.01)
    warm = stream.batches(warmup, distinct_users=mix.distinct_users)
    batches = stream.batches(count, distinct_users=mix.distinct_users)
    if mix.malformed:
        batches = [_with_malformed(batch, mix.malformed) for batch in batches]
    if mix.labels:
        batches = with_labels(batches, earlier=[r for batch in warm for r in batch], count=mix.labels)
    return warm, batches


def with_labels(
    batches: list[list[StreamRecord]], earlier: Iterable[StreamRecord], count: int
) -> list[list[StreamRecord]]:
    """Each batch with its last `count` records replaced by labels of transactions seen before it.

    Each batch's labels are for distinct merchants and transactions never labelled before (a label
    counted twice would be a duplicate, and write nothing); they became known a minute before arrival.
    """
    seen = [json.loads(record.data) for record in earlier]
    labelled: set[str] = set()
    result = []
    for batch in batches:
        kept, replaced = batch[:-count], batch[-count:]
        merchants: set[str] = set()
        labels: list[dict[str, Any]] = []
        for tx in seen:
            if len(labels) == count:
                break
            if tx["transaction_id"] in labelled or tx["merchant_id"] in merchants:
                continue
            labelled.add(tx["transaction_id"])
            merchants.add(tx["merchant_id"])
            labels.append(tx)
        if len(labels) < count:
            raise SystemExit(f"not enough earlier transactions to label {count} per batch")
        result.append(
            kept + [_label(record, tx, len(labelled)) for record, tx in zip(replaced, labels, strict=True)]
        )
        seen.extend(json.loads(record.data) for record in kept)
    return result


def _label(record: StreamRecord, tx: dict[str, Any], n: int) -> StreamRecord:
    """`record`'s place in the stream, holding a label of `tx` (every fourth one fraud)."""
    label = label_of(
        {**tx, "is_fraud": n % 4 == 0}, datetime.fromtimestamp(record.arrival_epoch - 60, UTC).isoformat()
    )
    return StreamRecord(record.shard_id, record.sequence_number, label_payload(label), record.arrival_epoch)


def _with_malformed(batch: list[StreamRecord], count: int) -> list[StreamRecord]:
    """The batch with its last records' amounts made negative (the contract rejects them)."""
    spoiled = []
    for record in batch[-count:]:
        body = json.loads(record.data)
        body["amount"] = -abs(body["amount"])
        spoiled.append(
            StreamRecord(
                record.shard_id, record.sequence_number, json.dumps(body).encode(), record.arrival_epoch
            )
        )
    return batch[:-count] + spoiled


def _measure(
    mix: Mix, bundle: Bundle, args: argparse.Namespace
) -> tuple[list[Counter[str]], list[Counter[str]], list[int], list[tuple[int, int]]]:
    """Per counted batch, the calls of ours and of the naive way (each on a fresh stack)."""
    import boto3
    from moto import mock_aws

    from fraudwatch.settings import Settings
    from fraudwatch.wiring import build_service

    warm, batches = _batches(mix, args.warmup_batches, max(args.batches, args.naive_batches), seed=7)
    ours: list[Counter[str]] = []
    alerts: list[int] = []
    keys: list[tuple[int, int]] = []
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        env = _create_stack(session)
        counter = CallCounter(table_labels(env))
        # clients copy the session's event handlers when they are built, so register first
        session.events.register("provide-client-params.*.*", counter)
        service = build_service(Settings.from_env({**env, "MODEL_DIR": str(bundle.path)}), session)
        for batch in warm:
            service.process(batch)
        counter.take()
        for batch in batches[: args.batches]:
            report = service.process(batch)
            _check(report, batch)
            alerts.append(sum(d.is_alert for d in report.decisions))
            keys.append(profile_keys(batch))
            ours.append(counter.take())

    naive: list[Counter[str]] = []
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        env = _create_stack(session)
        counter = CallCounter(table_labels(env))
        session.events.register("provide-client-params.*.*", counter)
        handler = NaiveHandler({**env, "MODEL_DIR": str(bundle.path)}, bundle.path, session=session)
        for batch in warm:
            handler.handle_batch(batch)
        counter.take()
        for batch in batches[: args.naive_batches]:
            handler.handle_batch(batch)
            naive.append(counter.take())
    return ours, naive, alerts, keys


def profile_keys(batch: list[StreamRecord]) -> tuple[int, int]:
    """The distinct users and merchants whose profiles a batch reads."""
    from fraudwatch.domain.events import parse_event
    from fraudwatch.domain.transaction import Transaction
    from fraudwatch.errors import InvalidRecordError

    users, merchants = set(), set()
    for record in batch:
        try:
            event = parse_event(record.data, received_at=record.arrival_epoch)
        except InvalidRecordError:
            continue
        merchants.add(event.merchant_id)
        if isinstance(event, Transaction):
            users.add(event.user_id)
    return len(users), len(merchants)


def _check(report: Any, batch: list[StreamRecord]) -> None:
    handled = len(report.decisions) + report.labels + len(report.quarantined)
    if report.failed or handled != len(batch):
        raise SystemExit(
            f"batch not fully handled ({handled} of {len(batch)}, {len(report.failed)} failed): "
            f"{[type(e).__name__ + ': ' + str(e) for e in report.errors]}"
        )


# ---------------------------------------------------------------- output


def _print_mix(
    mix: Mix,
    ours: list[Counter[str]],
    naive: list[Counter[str]],
    alerts: list[int],
    keys: list[tuple[int, int]],
) -> None:
    users, merchants = [u for u, _ in keys], [m for _, m in keys]
    print(
        f"== {mix.name}: alerts per batch {min(alerts)}-{max(alerts)} (mean {sum(alerts) / len(alerts):.1f});"
        f" profiles read per batch: users {min(users)}-{max(users)},"
        f" merchants {min(merchants)}-{max(merchants)}"
    )
    operations = sorted({op for c in ours + naive for op in c})
    rows = [
        (op, _mean(ours, op), max(c[op] for c in ours), _mean(naive, op), max(c[op] for c in naive))
        for op in operations
    ]
    rows.append(
        (
            "total",
            _mean_total(ours),
            max(c.total() for c in ours),
            _mean_total(naive),
            max(c.total() for c in naive),
        )
    )
    print(table(("operation", "ours mean", "ours max", "naive mean", "naive max"), rows))
    print()


def _print_summary(summary: list[tuple[Mix, list[Counter[str]], list[Counter[str]], list[int]]]) -> None:
    print(f"Summary (calls per batch of 100; the budget, <= {BUDGET}, counts reads + writes + alerts):")
    rows = []
    for mix, ours, naive, _ in summary:
        budgeted = [_budgeted(c) for c in ours]
        quarantine = max(c.total() for c in ours) - max(budgeted)
        rows.append(
            (
                mix.name,
                sum(budgeted) / len(budgeted),
                max(budgeted),
                f"+{quarantine}" if quarantine else "0",
                sum(_budgeted(c) for c in naive) / len(naive),
                verdict(max(budgeted), BUDGET),
            )
        )
    headers = ("mix", "ours mean", "ours max", "+ quarantine", "naive mean", "ours max vs budget")
    print(table(headers, rows))


def _budgeted(counts: Counter[str]) -> int:
    """Reads, writes and alerts: every call but the quarantine's."""
    return sum(n for op, n in counts.items() if not op.startswith("SendMessage"))


def _mean(counts: list[Counter[str]], op: str) -> float:
    return sum(c[op] for c in counts) / len(counts)


def _mean_total(counts: list[Counter[str]]) -> float:
    return sum(c.total() for c in counts) / len(counts)


if __name__ == "__main__":
    raise SystemExit(main())
