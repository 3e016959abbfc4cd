"""`fraudwatch cases`: the review queue from the command line (list, show, assign, comment, close).

The same service as the HTTP API and the console (fraudwatch.domain.cases.CaseService), on the stack
found through its outputs, with the operator's credentials: a close puts the verdict's label on the
stream and, with `--block`, the user on `blocked_users`. Who acts is `--who` (default: you).
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudwatch.errors import InvalidRecordError, UsageError
from infra.state import add_stack_options

if TYPE_CHECKING:
    from fraudwatch.domain.cases import Case, CaseService


def service_of(args: argparse.Namespace) -> CaseService:
    """The stack's cases, stream and lists, through its outputs and endpoint."""
    from fraudwatch.adapters.cases import DynamoCaseStore, KinesisLabels
    from fraudwatch.adapters.controls import ControlsStore
    from fraudwatch.domain.cases import CaseService
    from infra.emulator import client
    from infra.state import read_stack_outputs, stack_endpoint

    outputs = read_stack_outputs(Path(args.outputs))
    if not outputs:
        raise UsageError(f"no stack outputs at {args.outputs}: start a stack (fraudwatch stack up --detach)")
    missing = [name for name in ("CasesTableName", "StreamName", "ListsTableName") if name not in outputs]
    if missing:
        raise UsageError(f"the stack's outputs have no {', '.join(missing)}: deploy the current template")
    endpoint = args.endpoint or stack_endpoint(Path(args.outputs))
    dynamodb = client("dynamodb", endpoint, args.region)
    return CaseService(
        store=DynamoCaseStore(outputs["CasesTableName"], dynamodb),
        labels=KinesisLabels(outputs["StreamName"], client("kinesis", endpoint, args.region)),
        lists=ControlsStore(outputs["ListsTableName"], outputs.get("RulesTableName", ""), dynamodb),
    )


# ---------------------------------------------------------------- the commands


def cases_list(args: argparse.Namespace, cases: CaseService) -> str:
    """The queue, oldest first, filtered."""
    from fraudwatch.domain.cases import QueueFilter, status_of

    where = QueueFilter(
        args.reason, args.rule, args.merchant, status_of(args.status), args.assignee, args.user
    )
    page = cases.queue(where, args.limit, args.cursor)
    if args.json:
        return json.dumps({"cases": [c.to_dict() for c in page.cases], "next": page.next}, indent=2)
    if not page.cases:
        return f"no {args.status} case" + (
            " matches these filters" if args.reason or args.rule or args.merchant else ""
        )
    rows = [("opened", "case", "decision", "score", "amount", "merchant", "reasons", "assignee")]
    rows += [
        (
            c.opened_at[:19],
            c.case_id,
            c.decision.decision.value,
            f"{c.decision.score:.3f}",
            f"{c.decision.amount:,.2f} {c.decision.currency}",
            c.decision.merchant_id,
            ", ".join([*c.reason_features, *c.decision.rule_reasons]),
            c.assignee or "-",
        )
        for c in page.cases
    ]
    more = f"\nmore: --cursor {page.next}" if page.next else ""
    return _table(rows) + more


def cases_show(args: argparse.Namespace, cases: CaseService) -> str:
    """One case, whole."""
    case = cases.show(args.case)
    return json.dumps(case.to_dict(), indent=2) if args.json else describe(case)


def cases_assign(args: argparse.Namespace, cases: CaseService) -> str:
    case = cases.assign(args.case, args.assignee, by=args.who)
    return f"case {case.case_id}: assigned to {case.assignee}"


def cases_comment(args: argparse.Namespace, cases: CaseService) -> str:
    case = cases.comment(args.case, args.text, by=args.who)
    return f"case {case.case_id}: {len(case.history)} events in its history"


def cases_close(args: argparse.Namespace, cases: CaseService) -> str:
    from fraudwatch.domain.cases import verdict_of

    closing = cases.close(args.case, verdict_of(args.verdict), args.reason, by=args.who, block=args.block)
    case = closing.case
    block = f"; {closing.block_note}" if closing.block_note else ""
    return (
        f"case {case.case_id}: closed as {args.verdict}; its label is on the stream for "
        f"{case.decision.merchant_id}{block}"
    )


def describe(case: Case) -> str:
    """A case for a person to read."""
    d = case.decision
    lines = [
        f"case {case.case_id}: {case.status.value}"
        + (f" ({case.verdict.value})" if case.verdict else "")
        + (f", assigned to {case.assignee}" if case.assignee else ""),
        f"  payment   {d.amount:,.2f} {d.currency} at {d.merchant_id} by {d.user_id}, {d.transaction_time}",
        f"  decision  {d.decision.value}, score {d.score:.3f} (model {d.model_version})",
        f"  opened    {case.opened_at}",
        "  reasons   " + (", ".join(f"{r.feature} {r.contribution:+.2f}" for r in d.reasons) or "-"),
        "  rules     " + (", ".join(d.rule_reasons) or "-"),
        "  the user's decisions before it:",
        *(
            f"    {r.decided_at[:19]}  {r.decision:<8}  {r.score:.3f}  {r.transaction_id}  "
            f"{r.amount:,.2f} {r.currency}"
            for r in case.recent
        ),
        "  history:",
        *(
            f"    {e.at[:19]}  {e.by}  {e.action}" + (f": {e.detail}" if e.detail else "")
            for e in case.history
        ),
    ]
    return "\n".join(lines)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _run(action: Callable[[argparse.Namespace, CaseService], str]) -> Callable[[argparse.Namespace], int]:
    """Print what the command returns; bad input and an unknown case are usage errors (exit 2)."""

    def run(args: argparse.Namespace) -> int:
        from fraudwatch.domain.cases import CaseNotFound

        try:
            print(action(args, service_of(args)))
        except InvalidRecordError as exc:
            raise UsageError(f"{exc.field}: {exc.reason}") from exc
        except CaseNotFound as exc:
            raise UsageError(f"{exc}: see `fraudwatch cases list`") from exc
        return 0

    return run


MAX_PAGE = 100  # cases a page, as the API's (fraudwatch.cases_api.MAX_PAGE, heavy to import here)


def _feature(text: str) -> str:
    """--reason: a feature's name, so that a typo is not an empty queue (checked where the API checks it)."""
    from fraudwatch.domain.cases import reason_problem

    if problem := reason_problem(text):
        raise argparse.ArgumentTypeError(problem)
    return text


def _rule_code(text: str) -> str:
    """--rule: a code as decisions record them, so that a bare id is not an empty queue (as the API)."""
    from fraudwatch.domain.cases import rule_problem

    if problem := rule_problem(text):
        raise argparse.ArgumentTypeError(problem)
    return text


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `cases` (list, show, assign, comment, close)."""
    from fraudwatch.domain.cases import Verdict
    from infra.cli import at_least

    cases = subparsers.add_parser(
        "cases",
        help="review cases: list the queue, show, assign, comment, close with a verdict",
        description="The review queue (CasesTable, docs/cases.md): a case per FLAGGED alert. Closing one "
        "puts its verdict on the stream as a label (the merchant's risk learns it from the next midnight).",
    )
    commands = cases.add_subparsers(dest="cases_command", required=True, metavar="COMMAND")

    listed = commands.add_parser(
        "list", help="the queue, oldest first", description="List cases, oldest first."
    )
    listed.add_argument(
        "--status",
        type=str.lower,
        choices=["open", "closed"],
        default="open",
        help="either case; default: open",
    )
    listed.add_argument(
        "--reason", type=_feature, help="only cases with this feature among their top reasons"
    )
    listed.add_argument(
        "--rule",
        type=_rule_code,
        help="only cases a rule or list matched: rule:<id> or list:<name>, e.g. rule:night-spend",
    )
    listed.add_argument("--merchant", help="only this merchant's cases")
    listed.add_argument("--assignee", help="only this analyst's cases (e.g. your own)")
    listed.add_argument("--user", help="only this user's cases")
    listed.add_argument(
        "--limit", type=at_least(1, MAX_PAGE), default=20, metavar="1-100", help="cases per page (default 20)"
    )
    listed.add_argument("--cursor", help="the `more:` cursor of the page before")
    listed.add_argument("--json", action="store_true", help="JSON, as the API answers")
    listed.set_defaults(run=_run(cases_list))

    show = commands.add_parser(
        "show",
        help="one case: payment, reasons, recent decisions, history",
        description="Show one case: the payment, its decision and reasons, the rules and lists that "
        "matched, the user's decisions before it, and the case's history.",
    )
    show.add_argument("case", help="the case id (the transaction id)")
    show.add_argument("--json", action="store_true", help="JSON, as the API answers")
    show.set_defaults(run=_run(cases_show))

    assign = commands.add_parser(
        "assign",
        help="give a case to an analyst",
        description="Give an open case to an analyst (to the one it is already with: no change).",
    )
    assign.add_argument("case", help="the case id")
    assign.add_argument("assignee", help="the analyst")
    assign.set_defaults(run=_run(cases_assign))

    comment = commands.add_parser(
        "comment",
        help="add a comment to a case's history",
        description="Add a comment to a case's history, open or closed, with who and when.",
    )
    comment.add_argument("case", help="the case id")
    comment.add_argument("text", help="the comment")
    comment.set_defaults(run=_run(cases_comment))

    close = commands.add_parser(
        "close",
        help="close a case with a verdict (its label goes on the stream)",
        description="Close with a verdict. The same verdict again changes nothing; another verdict is "
        "recorded in the history with who and when.",
    )
    close.add_argument("case", help="the case id")
    close.add_argument("--verdict", required=True, choices=[v.value for v in Verdict])
    close.add_argument("--reason", required=True, help="why (kept in the history)")
    close.add_argument("--block", action="store_true", help="put the user on blocked_users (fraud only)")
    close.set_defaults(run=_run(cases_close))

    for parser in (listed, show, assign, comment, close):
        add_stack_options(parser)
        parser.add_argument("--who", default=getpass.getuser(), help="who acts (default: you)")
