"""Events put on the transactions stream by a job (the daily count of merchants' activity), in batches."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.adapters.aws import Failure, given_up, is_transient, retry_batch
from fraudwatch.errors import AwsCallError

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

PUT_CHUNK = 500
"""Records per PutRecords call at most (Kinesis's limit)."""

Entry = dict[str, Any]


class StreamPutError(AwsCallError):
    """Records could not be put on the stream; `unwritten` holds their partition keys."""


class KinesisEvents:
    """Events on the transactions stream, each with the value of its `key` field as partition key."""

    def __init__(
        self,
        stream_name: str,
        client: KinesisClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.stream_name = stream_name
        self._client = client or boto3.client("kinesis")
        self._sleep = sleep

    def put_many(self, events: Sequence[Mapping[str, Any]], key: str) -> int:
        """Put every event; return how many. Records failed transiently (throttled, Kinesis's fault) are
        put again with backoff; raises StreamPutError naming the keys of those given up."""
        entries: list[Entry] = [
            {"Data": json.dumps(event).encode(), "PartitionKey": str(event[key])} for event in events
        ]
        failed: list[tuple[Entry, Failure]] = []
        for start in range(0, len(entries), PUT_CHUNK):
            failed += retry_batch(self._put, entries[start : start + PUT_CHUNK], self._sleep)
        if failed:
            keys = [(entry["PartitionKey"], failure) for entry, failure in failed]
            raise given_up(StreamPutError, keys, operation="PutRecords", resource=self.stream_name)
        return len(entries)

    def _put(self, entries: list[Entry]) -> list[tuple[Entry, Failure]]:
        """One PutRecords call; the entries it failed, with why."""
        try:
            response = self._client.put_records(StreamName=self.stream_name, Records=entries)  # type: ignore[arg-type]
        except (ClientError, BotoCoreError) as exc:
            failure = Failure.of_exception(exc)
            return [(entry, failure) for entry in entries]
        return [
            (entry, Failure(result["ErrorCode"], is_transient(result["ErrorCode"])))
            for entry, result in zip(entries, response["Records"], strict=True)
            if "ErrorCode" in result
        ]
