"""What the demo measured, read back from the stack: decisions against the generator's truth, alerts,
queues, latency from arrival on the stream to decision, throughput.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fraudwatch.domain.events import EVENT_FIELD, LABEL_EVENT

if TYPE_CHECKING:
    from infra.runner import Timings
    from infra.seeding import Seeded


@dataclass
class DemoReport:
    """What the demo measured."""

    transactions: int
    decisions: dict[str, int]
    alerts: dict[str, int]
    quarantined: int
    on_failure: int
    true_positives: int
    false_positives: int
    false_negatives: int
    recall_by_pattern: dict[str, str]
    # ApproximateArrivalTimestamp on the stream -> decided_at, stamped as the batch is decided, just
    # before its writes: a burst larger than the runner drains at once waits in the stream, and shows.
    latency_ms: dict[str, float]
    latency_parts_ms: dict[str, dict[str, float]]
    """Where that time went, per record (the runner's timings): on the stream until read, waiting for
    the batch to fill (the batching window), in the handler."""
    produce_seconds: float
    end_to_end_seconds: float
    runner: dict[str, int]
    seeded: dict[str, int]
    """Profiles seeded from the population's history before the run (Seeded's fields)."""
    labels: dict[str, int] = field(default_factory=dict)
    rate: float | None = None
    """Transactions per second produced (None: as fast as the producer could)."""
    alerts_log: str = ""
    """Where the alerts were appended, one JSON line each."""
    api: list[dict[str, Any]] = field(default_factory=list)
    """Payments posted twice to the inline API after the run (`score_through_api`)."""
    """The run's transactions labelled on the stream once decided (LabelsFed's fields); empty: none."""

    @property
    def precision(self) -> float:
        """FLAGGED + REJECTED that were fraud."""
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else 0.0

    @property
    def recall(self) -> float:
        """Fraud that was FLAGGED or REJECTED."""
        fraud = self.true_positives + self.false_negatives
        return self.true_positives / fraud if fraud else 0.0

    @property
    def throughput(self) -> float:
        """Transactions decided per second, from the first arrival on the stream to the last decision."""
        return self.transactions / self.end_to_end_seconds if self.end_to_end_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data, derived figures included."""
        return asdict(self) | {
            "precision": self.precision,
            "recall": self.recall,
            "throughput_per_s": self.throughput,
        }

    def text(self) -> str:
        """The report a person reads."""
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(self.decisions.items()))
        alerts = ", ".join(f"{k} {v:,}" for k, v in sorted(self.alerts.items())) or "none"
        lat = self.latency_ms
        pace = f"at {self.rate:,.0f}/s" if self.rate else "as fast as possible"
        return "\n".join(
            [
                f"transactions     {self.transactions:,} produced {pace} in {self.produce_seconds:.1f} s, "
                f"all decided; quarantined {self.quarantined}, on-failure {self.on_failure}",
                f"decisions        {kinds}",
                f"alerts           {alerts}"
                + (f", each appended to {self.alerts_log}" if self.alerts_log else ""),
                f"precision        {self.precision:.3f}  (FLAGGED+REJECTED that were fraud: "
                f"{self.true_positives} of {self.true_positives + self.false_positives})",
                f"recall           {self.recall:.3f}  (fraud FLAGGED or REJECTED: "
                f"{self.true_positives} of {self.true_positives + self.false_negatives}), by pattern:",
                *self._pattern_lines(),
                f"latency          arrival on the stream -> decision: p50 {lat['p50']:.0f} ms, "
                f"p95 {lat['p95']:.0f} ms, p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms",
                self._latency_parts_line(),
                f"throughput       {self.throughput:,.0f} transactions/s end to end "
                f"({self.end_to_end_seconds:.1f} s from first arrival to last decision)",
                f"runner           {self.runner['invocations']} invocations, "
                f"{self.runner['retries']} retries, {self.runner['errors']} errors",
                f"seeded           {self.seeded['users']:,} users' profiles and {self.seeded['merchants']:,} "
                f"merchants' from the history (holding {self.seeded['labels']:,} labels known by its end, "
                f"{self.seeded['fraud_labels']:,} fraud)",
                self._labels_line(),
                *self._api_lines(),
            ]
        )

    def _pattern_lines(self) -> list[str]:
        if not self.recall_by_pattern:
            return ["                   no fraud produced"]
        return [
            f"  {pattern:<22} {caught:>7}  {PATTERN_NOTES.get(pattern, '')}"
            for pattern, caught in sorted(self.recall_by_pattern.items())
        ]

    def _latency_parts_line(self) -> str:
        parts = self.latency_parts_ms
        if not parts:
            return "                 (no timings from the runner)"
        where = ", ".join(f"{name} {p['p50']:.0f}/{p['p99']:.0f}" for name, p in parts.items())
        return f"  where it goes   p50/p99 ms per record: {where}"

    def _api_lines(self) -> list[str]:
        if not self.api:
            return []
        same = sum(p["same_again"] for p in self.api)
        lines = [
            f"inline API       {len(self.api)} new payments posted twice each to POST /v1/transactions "
            f"(fraudwatch serve, the real handler): the same decision the second time for {same}"
        ]
        lines += [
            f"                 {p['transaction_id']}  {p['amount']:>10,.2f}  {p['decision']:<8} "
            f"score {p['score']:.3f}  first answer in {p['ms']:.0f} ms"
            for p in self.api
        ]
        return lines

    def _labels_line(self) -> str:
        if not self.labels:
            return "labels           none put on the stream (--no-labels)"
        fed = self.labels
        return (
            f"labels           {fed['put']:,} of this run's transactions labelled on the stream, "
            f"{fed['fraud']:,} of them fraud (partition key merchant_id); {fed['counted']:,} counted in "
            f"{fed['merchants']:,} merchants' profiles, whose fraud rates read them from tomorrow"
        )


PATTERN_NOTES = {
    "account_takeover": "a new owner's spending: amounts and merchants unlike the card's own history",
    "card_testing": "bursts of tiny payments: the card's 1 h velocity",
    "spending_spike": "one payment far above the card's usual: missed when it is ordinary for a big spender",
    "velocity_burst": "many payments within minutes: the card's 1 h and 24 h velocity",
    "compromised_merchant": "not yet: merchant risk comes from chargebacks, which arrive days after the "
    "payments, so a merchant compromised during the run has none (docs/backtest.md measures it later)",
}
"""Why each fraud pattern is caught, or not, in a line of the report."""
TIMING_PARTS = {"in_stream": "on the stream until read", "batching": "batching window", "handler": "handler"}


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of a sample (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": ordered[-1]}


def _latency_parts(timings: Timings | None) -> dict[str, dict[str, float]]:
    if timings is None:
        return {}
    return {
        label: percentiles([s * 1000 for s in getattr(timings, part)]) for part, label in TIMING_PARTS.items()
    }


def build_report(
    truth: Sequence[Mapping[str, Any]],
    decisions: Mapping[str, Mapping[str, str]],
    arrivals: Mapping[str, float],
    alerts: Sequence[Mapping[str, Any]],
    *,
    quarantined: int,
    on_failure: int,
    produce_seconds: float,
    runner: Mapping[str, int],
    seeded: Seeded,
    timings: Timings | None = None,
) -> DemoReport:
    """Compare the decisions with the generator's truth, and time them against the stream's arrivals."""

    positive = {"FLAGGED", "REJECTED"}
    tp = fp = fn = 0
    caught: Counter[str] = Counter()
    frauds: Counter[str] = Counter()
    for tx in truth:
        flagged = decisions[tx["transaction_id"]]["decision"] in positive
        fraud = bool(tx["is_fraud"])
        tp, fp, fn = tp + (flagged and fraud), fp + (flagged and not fraud), fn + (fraud and not flagged)
        if fraud:
            frauds[str(tx.get("fraud_pattern", "fraud"))] += 1
            caught[str(tx.get("fraud_pattern", "fraud"))] += flagged
    decided_at = {tx: datetime.fromisoformat(d["decided_at"]).timestamp() for tx, d in decisions.items()}
    latencies = [(decided_at[tx] - arrivals[tx]) * 1000 for tx in decided_at if tx in arrivals]
    first_arrival = min(arrivals.values(), default=0.0)
    last_decision = max(decided_at.values(), default=0.0)
    alert_kinds = Counter(str(alert["decision"]) for alert in alerts)
    return DemoReport(
        transactions=len(truth),
        decisions=dict(Counter(d["decision"] for d in decisions.values())),
        alerts=dict(alert_kinds),
        quarantined=quarantined,
        on_failure=on_failure,
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        recall_by_pattern={p: f"{caught[p]}/{n}" for p, n in frauds.items()},
        latency_ms=percentiles(latencies),
        latency_parts_ms=_latency_parts(timings),
        produce_seconds=produce_seconds,
        end_to_end_seconds=max(0.0, last_decision - first_arrival),
        runner=dict(runner),
        seeded=seeded._asdict(),
    )


def read_decisions(dynamodb: Any, table: str) -> dict[str, dict[str, str]]:
    """transaction_id -> decision and decided_at, for every item of the decisions table."""
    decisions = {}
    projection = "transaction_id, decision, decided_at"
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ProjectionExpression=projection):
        for item in page["Items"]:
            decisions[item["transaction_id"]["S"]] = {k: v["S"] for k, v in item.items()}
    return decisions


def read_arrivals(kinesis: Any, stream_name: str) -> dict[str, float]:
    """transaction_id -> ApproximateArrivalTimestamp (epoch seconds) of every transaction on the stream,
    reading every shard from the start (labels, which carry their transaction's id, left out)."""

    arrivals = {}
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in page["Records"]:
                with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                    body = json.loads(record["Data"])
                    if body.get(EVENT_FIELD) != LABEL_EVENT:
                        arrivals[body["transaction_id"]] = record["ApproximateArrivalTimestamp"].timestamp()
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return arrivals


def count_items(dynamodb: Any, table: str) -> int:
    """Items in a table (a COUNT scan)."""
    total = 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, Select="COUNT"):
        total += page["Count"]
    return total


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Messages waiting on a queue."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])
