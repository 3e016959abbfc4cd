"""Redriving what the event-source mapping gave up on: `fraudwatch redrive`.

When a batch runs out of retries (or ages out), the mapping moves on and sends its shard and sequence
range to the on-failure queue; the records stay on the stream until its retention ends. This reads
each range back from the shard and scores it in redrive mode (the shard checkpoint has moved past
those records; the profile's recent transaction ids still stop a second application). A message is
deleted only once its whole range is decided; one that cannot be read back or decided stays on the
queue, to be tried again.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudwatch.domain.records import StreamRecord
from fraudwatch.domain.scoring import ScoringService
from infra.state import add_stack_options

BATCH = 100


@dataclass
class RedriveStats:
    """What one redrive did."""

    messages: int = 0
    redriven: int = 0
    records: int = 0
    decided: int = 0
    duplicates: int = 0
    quarantined: int = 0
    kept: int = 0


def redrive(service: ScoringService, *, kinesis: Any, sqs: Any, queue_url: str) -> RedriveStats:
    """Score every range on the on-failure queue again; delete each message once its range is decided."""
    stats = RedriveStats()
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            stats.messages += 1
            if _redrive_one(service, kinesis, json.loads(message["Body"])["KinesisBatchInfo"], stats):
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                stats.redriven += 1
            else:
                stats.kept += 1
        if stats.kept:
            break  # what is kept reappears after its visibility timeout: not in this run
    return stats


def _redrive_one(service: ScoringService, kinesis: Any, info: dict[str, Any], stats: RedriveStats) -> bool:
    from botocore.exceptions import ClientError

    try:
        records = list(
            read_range(
                kinesis,
                info["streamArn"],
                info["shardId"],
                info["startSequenceNumber"],
                info["endSequenceNumber"],
            )
        )
    except ClientError:  # the shard or the range's start is gone from the stream
        return False
    if len(records) < int(info.get("batchSize", 0)):
        return False  # part of the range is past the stream's retention: keep the message for a person
    stats.records += len(records)
    for start in range(0, len(records), BATCH):
        report = service.process(records[start : start + BATCH], redrive=True)
        stats.decided += len(report.decisions)
        stats.duplicates += report.duplicates
        stats.quarantined += len(report.quarantined)
        if report.failed:
            return False
    return True


def read_range(kinesis: Any, stream_arn: str, shard_id: str, first: str, last: str) -> Iterator[StreamRecord]:
    """The records of one shard from sequence number `first` to `last`, both included."""
    iterator = kinesis.get_shard_iterator(
        StreamName=stream_arn.rsplit("/", 1)[-1],
        ShardId=shard_id,
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=first,
    )["ShardIterator"]
    end = int(last)
    while iterator:
        response = kinesis.get_records(ShardIterator=iterator, Limit=1000)
        for record in response["Records"]:
            if int(record["SequenceNumber"]) > end:
                return
            yield StreamRecord(
                shard_id=shard_id,
                sequence_number=record["SequenceNumber"],
                data=record["Data"],
                arrival_epoch=record["ApproximateArrivalTimestamp"].timestamp(),
                partition_key=record["PartitionKey"],
            )
        if not response["Records"] and not response.get("MillisBehindLatest"):
            return
        iterator = response.get("NextShardIterator")


def _redrive_command(args: argparse.Namespace) -> int:
    from fraudwatch.errors import UsageError
    from fraudwatch.settings import Settings
    from fraudwatch.wiring import build_service
    from infra.emulator import boto_session, client
    from infra.invoke import function_environment
    from infra.state import require_stack_outputs, stack_endpoint

    outputs = require_stack_outputs(Path(args.outputs))
    endpoint = args.endpoint or stack_endpoint(Path(args.outputs))
    try:
        env = function_environment(outputs) | {"MODEL_DIR": args.bundle}
        queue_url = outputs["OnFailureQueueUrl"]
    except KeyError as exc:
        raise UsageError(f"{exc.args[0]}: is {args.outputs} this template's stack?") from exc
    session = boto_session(endpoint, args.region)
    service = build_service(Settings.from_env(env), session, endpoint_url=endpoint)
    stats = redrive(
        service,
        kinesis=client("kinesis", endpoint, args.region),
        sqs=client("sqs", endpoint, args.region),
        queue_url=queue_url,
    )
    print(
        f"{stats.messages} on-failure messages: {stats.redriven} redriven ({stats.records} records: "
        f"{stats.decided} decided, {stats.duplicates} already applied, {stats.quarantined} quarantined), "
        f"{stats.kept} kept on the queue"
    )
    return 1 if stats.kept else 0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `redrive`: decide what the mapping gave up on."""
    from infra.invoke import DEFAULT_BUNDLE

    parser = subparsers.add_parser(
        "redrive",
        help="decide the records the event-source mapping gave up on (the on-failure queue's ranges)",
        description="Read each shard range on the on-failure queue back from the stream and score it in "
        "redrive mode; delete the message once its range is decided. Exits 1 when a message had to be "
        "kept (a range past the stream's retention, or a failure: run it again).",
    )
    add_stack_options(parser)
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="model bundle directory")
    parser.set_defaults(run=_redrive_command)
