"""`fraudwatch activity`: the daily count of merchants' payments, put on the stream (domain/activity.py).

Run after each UTC midnight (by a scheduler: cron, or EventBridge invoking it). It reads the payments
of the days counted and the 30 days before them from the decisions table's by-payment-day index, counts
each merchant's payments of each day (`count_days`), and puts one `"event": "activity"` record per
merchant and day on the stream, partition key `merchant_id`: the scoring function sets those counts in
the merchant's profile. The last RECOUNT_DAYS days are counted again each run: the stream accepts
payments up to 7 days late, and a count set again is a count corrected, never a count doubled.
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fraudwatch.domain.activity import MAX_COUNT_DAYS, RECOUNT_DAYS, count_recent
from fraudwatch.domain.events import activity_records
from fraudwatch.errors import UsageError
from infra.cli import at_least
from infra.state import add_stack_options


def _activity_command(args: argparse.Namespace) -> int:
    from fraudwatch.adapters.dynamodb import DynamoDecisionStore
    from infra.emulator import client
    from infra.producer import produce
    from infra.state import read_stack_outputs, stack_endpoint

    outputs_path = Path(args.outputs)
    try:
        outputs = read_stack_outputs(outputs_path)
        endpoint = args.endpoint or stack_endpoint(outputs_path)
        stream = args.stream or outputs.get("StreamName")
        table = args.table or outputs.get("DecisionsTableName")
        if not stream or not table:
            raise ValueError(
                f"no stream or decisions table: pass them, or deploy first so {outputs_path} names them"
            )
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    last = (args.day or datetime.now(UTC).date() - timedelta(days=1)) - date(1970, 1, 1)
    decisions = DynamoDecisionStore(table, client=client("dynamodb", endpoint, args.region))
    activities = count_recent(decisions.payments_on, last.days, args.days)
    kinesis = client("kinesis", endpoint, args.region)
    stats = produce(kinesis, stream, activity_records(activities), unit="record")
    print(f"counted {args.days} days of payments: put {stats.records_put} activity records on {stream}")
    return 0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `activity`: count the merchants' payments of the days just ended and put them on the stream."""
    parser = subparsers.add_parser(
        "activity",
        help="count each merchant's payments of the days just ended and put them on the stream",
        description="The daily count behind the merchants' payment features (merchant_payments_1d, "
        "merchant_new_card_share_7d, ...): read the decisions table, count each merchant's payments, "
        "cards and cards new to it per UTC day, and put one activity record per merchant and day on the "
        f"stream (partition key merchant_id). Run it after each UTC midnight; it counts the {RECOUNT_DAYS} "
        "days ending yesterday again each time, which corrects a day's count for payments decided late "
        "and never doubles one.",
    )
    add_stack_options(parser)
    parser.add_argument("--stream", help="stream name (default: StreamName from the stack's outputs)")
    parser.add_argument("--table", help="decisions table (default: DecisionsTableName from the outputs)")
    parser.add_argument(
        "--day", type=date.fromisoformat, help="the last day to count, YYYY-MM-DD (default: yesterday, UTC)"
    )
    parser.add_argument(
        "--days",
        type=at_least(1, MAX_COUNT_DAYS),
        default=RECOUNT_DAYS,
        help=f"days to count, ending --day: 1 to {MAX_COUNT_DAYS} (default {RECOUNT_DAYS})",
    )
    parser.set_defaults(run=_activity_command)
