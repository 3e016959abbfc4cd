"""The scoring processor: Kinesis records read for the domain, and Powertools' partial batch response."""

from collections.abc import Sequence
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from fraudwatch.domain.records import StreamRecord
from fraudwatch.domain.scoring import BatchReport
from fraudwatch.kinesis_batch import RecordNotProcessed, ScoringBatchProcessor, stream_record
from infra.events import lambda_record
from infra.invoke import LocalContext

SHARD = "shardId-000000000007"


def event(count: int) -> dict[str, Any]:
    return {
        "Records": [
            lambda_record(
                f'{{"n": {i}}}'.encode(),
                partition_key=f"user-{i}",
                sequence_number=f"4959{i:04d}",
                arrival=1_765_000_000.25 + i,
                shard_id=SHARD,
            )
            for i in range(count)
        ]
    }


class FailingService:
    """Reports the records whose sequence numbers it is given as failed (their writes did not happen)."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.batches: list[list[StreamRecord]] = []

    def process(self, records: Sequence[StreamRecord]) -> BatchReport:
        self.batches.append(list(records))
        return BatchReport(failed=[r for r in records if r.sequence_number in self.failing])


def handle(processor: ScoringBatchProcessor, batch: dict[str, Any]) -> dict[str, Any]:
    def record_handler(record: KinesisStreamRecord) -> None:
        processor.raise_if_failed(record)

    return dict(
        process_partial_response(
            event=batch,
            record_handler=record_handler,
            processor=processor,
            context=cast(LambdaContext, LocalContext()),
        )
    )


@pytest.mark.parametrize("wrap", [dict, KinesisStreamRecord])
def test_a_record_is_read_field_by_field(wrap: Any) -> None:
    (raw,) = event(1)["Records"]
    assert stream_record(wrap(raw)) == StreamRecord(
        shard_id=SHARD,
        sequence_number="49590000",
        data=b'{"n": 0}',
        arrival_epoch=1_765_000_000.25,
        partition_key="user-0",
        from_shard=True,
    )


def test_a_batch_without_failures_reports_none_and_every_record_as_a_success() -> None:
    service = FailingService(failing=set())
    processor = ScoringBatchProcessor(service)  # type: ignore[arg-type]
    batch = event(5)
    assert handle(processor, batch) == {"batchItemFailures": []}
    assert [r.sequence_number for r in service.batches[0]] == [f"4959{i:04d}" for i in range(5)]
    assert processor.success_messages == batch["Records"]
    assert (processor.fail_messages, processor.exceptions) == ([], [])


def test_only_the_failed_records_are_reported_for_retry_through_powertools_failure_path() -> None:
    service = FailingService(failing={"49590001", "49590003"})
    processor = ScoringBatchProcessor(service)  # type: ignore[arg-type]
    batch = event(5)
    assert handle(processor, batch) == {
        "batchItemFailures": [{"itemIdentifier": "49590001"}, {"itemIdentifier": "49590003"}]
    }
    failed = [r for r in processor.fail_messages if isinstance(r, KinesisStreamRecord)]
    assert [r.kinesis.sequence_number for r in failed] == ["49590001", "49590003"]
    assert len(processor.fail_messages) == 2
    assert [type(e[1]) for e in processor.exceptions] == [RecordNotProcessed, RecordNotProcessed]
    assert processor.success_messages == [batch["Records"][i] for i in (0, 2, 4)]


def test_a_batch_whose_every_record_failed_is_retried_whole() -> None:
    batch = event(3)
    service = FailingService(failing={r["kinesis"]["sequenceNumber"] for r in batch["Records"]})
    with pytest.raises(BatchProcessingError, match="All records failed processing"):
        handle(ScoringBatchProcessor(service), batch)  # type: ignore[arg-type]


def test_the_next_batch_starts_afresh() -> None:
    service = FailingService(failing={"49590001"})
    processor = ScoringBatchProcessor(service)  # type: ignore[arg-type]
    assert handle(processor, event(3))["batchItemFailures"] == [{"itemIdentifier": "49590001"}]
    service.failing = set()
    assert handle(processor, event(3)) == {"batchItemFailures": []}
    assert processor.success_messages == event(3)["Records"]
