"""End-to-end fixtures: the embedded stack (moto server + the deployed template.yaml + the real handler),
and stacks on in-process moto named by a prefix, so one test can compare a clean run with a faulty one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.deploy import deploy
from infra.dry_run import build_stack as build_stack  # the e2e tests' stacks on in-process moto
from infra.emulator import Emulator, client, emulator_environment
from infra.invoke import Handler, load_handler
from tests.adapters.conftest import (  # noqa: F401 - fixtures shared with the adapter tests
    alert_inbox,
    aws,
    restore_environ,
    stack,
)


@dataclass
class Embedded:
    """The template deployed on a moto server in its own process, with the real handlers loaded."""

    endpoint_url: str
    outputs: dict[str, str]
    handler: Handler
    api_handler: Handler
    """The inline API's (ScoringApiFunction), on the same stack."""

    def client(self, service: str) -> Any:
        """A boto3 client for one service on the emulator."""
        return client(service, self.endpoint_url)


@pytest.fixture(scope="session")
def embedded(tiny_bundle: Path) -> Iterator[Embedded]:
    """The embedded stack, once per test process (deploying takes about 15 s)."""
    with Emulator() as emulator:
        yield deployed(emulator.endpoint_url, "e2e", tiny_bundle)


def deployed(endpoint_url: str, stage: str, bundle: Path) -> Embedded:
    """The template deployed on the emulator as stack `fraudwatch-<stage>` (2 shards), with its handler."""
    outputs = deploy(
        endpoint_url, stack_name=f"fraudwatch-{stage}", parameters={"Stage": stage, "ShardCount": "2"}
    )
    functions = ("ScoringFunction", "ScoringApiFunction")
    handler, api_handler = (loaded(outputs, bundle, endpoint_url, function) for function in functions)
    return Embedded(endpoint_url, outputs, handler, api_handler)


def loaded(
    outputs: dict[str, str],
    bundle: Path,
    endpoint_url: str,
    function: str,
    settings: dict[str, str] | None = None,
) -> Handler:
    """A function's real handler on the emulator, with `settings` over its template environment."""
    saved = dict(os.environ)
    try:
        return load_handler(
            outputs,
            bundle_dir=bundle,
            endpoint_url=endpoint_url,
            overrides=emulator_environment(endpoint_url) | (settings or {}),
            function=function,
        )
    finally:  # the handler's clients are built; the rest of the session keeps its own environment
        os.environ.clear()
        os.environ.update(saved)


def scan(dynamodb: Any, table: str, key: str) -> dict[str, dict[str, Any]]:
    """Every item of a table, by its key."""
    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = dynamodb.scan(**kwargs)
        items.update({item[key]["S"]: item for item in page["Items"]})
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def drain_bodies(sqs: Any, queue_url: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every message of a queue as (parsed body, message attributes), deleting them."""
    messages: list[tuple[dict[str, Any], dict[str, Any]]] = []
    while batch := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", []):
        messages.extend((json.loads(m["Body"]), m.get("MessageAttributes", {})) for m in batch)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return messages


WALL_CLOCK = frozenset({"decided_at", "expires_at", "updated_at"})


def comparable(item: dict[str, Any]) -> dict[str, Any]:
    """A stored item without its wall-clock attributes (decided_at, its TTL, updated_at)."""
    return {k: v for k, v in item.items() if k not in WALL_CLOCK}
