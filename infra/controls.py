"""`fraudwatch lists` and `fraudwatch rules`: the fraud team's controls, changed without a deploy.

Both talk to the stack's ListsTable and RulesTable (found through the stack's outputs, like every
command that talks to a stack); the functions pick a change up within CONTROLS_MAX_AGE_SECONDS (30 s).
A rules document is compiled before it is stored: one that does not compile is refused with the rule's
id and the position of the error, and nothing is stored.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudwatch.domain.lists import ListEntry, entry_problem, list_name_problem
from fraudwatch.errors import AwsCallError, FraudwatchError
from infra.state import add_stack_options

if TYPE_CHECKING:
    from fraudwatch.adapters.controls import ControlsStore
    from fraudwatch.domain.rules import RuleSet

DURATION = re.compile(r"(\d+)([mhd])")
SECONDS = {"m": 60, "h": 3600, "d": 86400}


class ControlsCommandError(FraudwatchError):
    """A lists or rules command that cannot do what it was asked: the message says what to do instead."""


# ---------------------------------------------------------------- reading the operator's input


def read_rules(path: Path) -> RuleSet:
    """Compile a rules document from a YAML or JSON file; raise RulesError or ControlsCommandError."""
    import yaml

    from fraudwatch.domain.rules import compile_rules

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ControlsCommandError(f"{path}: cannot read it ({exc.strerror}), check the path") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ControlsCommandError(f"{path}: not YAML or JSON{where}, fix the file") from exc
    return compile_rules(document)


def expiry(text: str | None, now: float) -> float | None:
    """An expiry given as a duration from now (30m, 12h, 7d) or an ISO 8601 time with its offset."""
    if not text:
        return None
    if found := DURATION.fullmatch(text.strip()):
        return now + int(found.group(1)) * SECONDS[found.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ControlsCommandError(
            f"expiry {text!r}: give a duration (30m, 12h, 7d) or a time with its offset "
            "(2026-12-31T00:00:00Z)"
        )
    return moment.timestamp()


def entries_of_file(path: Path, *, who: str, now: float) -> list[ListEntry]:
    """Entries from a CSV (header list,value,why[,expires]) or JSON file (a list of such objects)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ControlsCommandError(f"{path}: cannot read it ({exc.strerror}), check the path") from exc
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ControlsCommandError(f"{path}: not JSON (line {exc.lineno}), fix the file") from exc
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ControlsCommandError(f"{path}: must be a JSON list of objects with list, value and why")
    else:
        rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise ControlsCommandError(f"{path}: no entries, give at least one (list, value, why)")
    entries = []
    for number, row in enumerate(rows, start=1):
        missing = [key for key in ("list", "value") if not str(row.get(key) or "").strip()]
        if missing:
            raise ControlsCommandError(f"{path}: entry {number} has no {' or '.join(missing)}")
        try:
            expires = expiry(str(row.get("expires") or "") or None, now)
        except ControlsCommandError as exc:
            raise ControlsCommandError(f"{path}: entry {number}: {exc}") from None
        entries.append(
            ListEntry(
                str(row["list"]).strip(),
                str(row["value"]).strip(),
                who,
                str(row.get("why") or "").strip(),
                now,
                expires,
            )
        )
    first: dict[tuple[str, str], int] = {}
    for number, entry in enumerate(entries, start=1):
        earlier = first.setdefault((entry.list_name, entry.value), number)
        if earlier != number:  # the store keeps one entry per list and value: the later would win silently
            raise ControlsCommandError(
                f"{path}: entry {number} repeats entry {earlier} ({entry.list_name} {entry.value}), keep one"
            )
    return entries


def checked(entries: Sequence[ListEntry]) -> list[ListEntry]:
    """The entries, every one valid; raise ControlsCommandError naming the first one that is not."""
    for number, entry in enumerate(entries, start=1):
        if problem := entry_problem(entry):
            raise ControlsCommandError(f"entry {number} ({entry.list_name}): {problem}")
    return list(entries)


# ---------------------------------------------------------------- the store


def store_of(args: argparse.Namespace) -> ControlsStore:
    """The stack's lists and rules tables, through its outputs and endpoint."""
    from fraudwatch.adapters.controls import ControlsStore
    from infra.emulator import client
    from infra.state import read_stack_outputs, stack_endpoint

    outputs = read_stack_outputs(Path(args.outputs))
    if not outputs:
        raise ControlsCommandError(f"no stack outputs at {args.outputs}, deploy first (fraudwatch stack up)")
    missing = [name for name in ("ListsTableName", "RulesTableName") if name not in outputs]
    if missing:
        raise ControlsCommandError(
            f"the stack's outputs have no {' or '.join(missing)}, deploy the current template"
        )
    endpoint = args.endpoint or stack_endpoint(Path(args.outputs))
    dynamodb = client("dynamodb", endpoint, args.region)
    return ControlsStore(outputs["ListsTableName"], outputs["RulesTableName"], dynamodb)


# ---------------------------------------------------------------- lists


def _one_source(args: argparse.Namespace) -> None:
    """LIST and VALUE, or --file: given both, one would be ignored."""
    if args.file and (args.list or args.value):
        raise ControlsCommandError("give LIST and VALUE, or --file, not both")


def lists_add(args: argparse.Namespace, store: ControlsStore, now: float) -> str:
    """Add one entry, or a file's."""
    _one_source(args)
    if args.file:
        entries = entries_of_file(Path(args.file), who=args.who, now=now)
    elif args.list and args.value:
        if not (args.why or "").strip():
            raise ControlsCommandError("say why the entry is there with --why")
        entries = [ListEntry(args.list, args.value, args.who, args.why, now, expiry(args.expires, now))]
    else:
        raise ControlsCommandError("give LIST and VALUE, or --file")
    store.add(checked(entries))
    lists = sorted({e.list_name for e in entries})
    return f"added {len(entries)} entries to {', '.join(lists)}: in force within {args.max_age:g} s"


def lists_remove(args: argparse.Namespace, store: ControlsStore, now: float) -> str:
    """Remove one entry, or a file's."""
    _one_source(args)
    if args.file:
        keys = [(e.list_name, e.value) for e in entries_of_file(Path(args.file), who=args.who, now=now)]
    elif args.list and args.value:
        keys = [(args.list, args.value)]
    else:
        raise ControlsCommandError("give LIST and VALUE, or --file")
    for list_name, _ in keys:
        if problem := list_name_problem(list_name):
            raise ControlsCommandError(problem)
    removed = store.remove(keys)
    absent = [f"{list_name} {value}" for list_name, value in keys if (list_name, value) not in removed]
    if absent:
        raise ControlsCommandError(
            f"removed {len(removed)} of {len(keys)} entries; not on their list, so not removed: "
            f"{', '.join(absent)} (see `fraudwatch lists show`)"
        )
    return f"removed {len(removed)} entries: out of force within {args.max_age:g} s"


def lists_show(args: argparse.Namespace, store: ControlsStore, now: float) -> str:
    """Every entry (of one list), with who, why, when and until when."""
    entries = sorted(store.entries(args.list), key=lambda e: (e.list_name, e.value))
    if not entries:
        return "no entries" + (f" on {args.list}" if args.list else "")
    rows = [("list", "value", "added by", "added at", "expires", "why")]
    for e in entries:
        ends = "never" if e.expires_at is None else _iso(e.expires_at)
        ends += " (expired)" if e.expired(now) else ""
        rows.append((e.list_name, e.value, e.added_by, _iso(e.added_at), ends, e.reason))
    return _table(rows)


# ---------------------------------------------------------------- rules


def rules_validate(args: argparse.Namespace) -> str:
    """Compile a document; say what it holds."""
    rules = read_rules(Path(args.file))
    lines = [f"{args.file}: version {rules.version}, {_count(rules)}: compiles"]
    lines += [
        f"rule {rule_id!r} is evaluated record by record, slower than on whole batches: {why}"
        for rule_id, why in rules.per_record.items()
    ]
    return "\n".join(lines)


def rules_test(args: argparse.Namespace) -> str:
    """Replay a labelled history with the document's rules (and a file's lists): the report."""
    from infra.rules_history import rules_on_history

    rules = read_rules(Path(args.file))
    lists = None
    if args.lists:
        from fraudwatch.domain.lists import ListSnapshot

        now = time.time()
        lists = ListSnapshot.of(checked(entries_of_file(Path(args.lists), who="rules test", now=now)), now)
    report = rules_on_history(
        rules,
        Path(args.history),
        bundle=Path(args.bundle),
        lists=lists,
        label_delay=args.label_delay_days * 86400,
        progress=sys.stderr.isatty(),
    )
    return report.to_markdown(rules.version)


def rules_push(args: argparse.Namespace, store: ControlsStore, now: float) -> str:
    """Compile a document (and show its test on history, if given one), then store it and put it in force."""
    rules = read_rules(Path(args.file))
    if args.history:
        print(rules_test(args), end="\n\n", flush=True)
    document = json.dumps(rules.to_dict())
    for earlier in store.history():
        if earlier.version == rules.version and earlier.document != document:
            raise ControlsCommandError(
                f"version {rules.version} was pushed before (#{earlier.seq}) with other rules, "
                "give the document a new version"
            )
    pushed = store.push(rules, pushed_by=args.who, note=args.note or "", now=now)
    return (
        f"pushed #{pushed.seq}, version {rules.version} ({_count(rules)}): in force within {args.max_age:g} s"
    )


def rules_show(args: argparse.Namespace, store: ControlsStore, now: float) -> str:
    """The document in force (or of one pushed version), as YAML that `rules push` takes back."""
    import yaml

    version = store.active() if args.version is None else store.version(args.version)
    if version is None:
        raise ControlsCommandError(
            "no rules pushed yet, push a document (fraudwatch rules push FILE)"
            if args.version is None
            else f"no pushed version #{args.version}, see `fraudwatch rules history`"
        )
    header = f"# #{version.seq}, pushed by {version.pushed_by} at {_iso(version.pushed_at)}"
    note = f"\n# note: {version.note}" if version.note else ""
    body = yaml.safe_dump(json.loads(version.document), sort_keys=False, allow_unicode=True)
    return f"{header}{note}\n{body.rstrip()}"


def rules_history(args: argparse.Namespace, store: ControlsStore, now: float) -> str:
    """Every pushed version, the one in force marked."""
    history = store.history()
    if not history:
        return "no rules pushed yet"
    active = store.active()
    rows = [("#", "version", "rules", "pushed by", "pushed at", "note", "")]
    for v in history:
        count = len(json.loads(v.document)["rules"])
        in_force = "in force" if active is not None and active.seq == v.seq else ""
        rows.append((str(v.seq), v.version, str(count), v.pushed_by, _iso(v.pushed_at), v.note, in_force))
    return _table(rows)


def rules_rollback(args: argparse.Namespace, store: ControlsStore, now: float) -> str:
    """Put an earlier pushed version back in force (it must still compile)."""
    from fraudwatch.domain.rules import compile_rules

    version = store.version(args.seq)
    if version is None:
        raise ControlsCommandError(f"no pushed version #{args.seq}, see `fraudwatch rules history`")
    rules = compile_rules(json.loads(version.document))
    store.activate(version)
    return f"#{version.seq}, version {rules.version} ({_count(rules)}), in force within {args.max_age:g} s"


# ---------------------------------------------------------------- command line


def _count(rules: RuleSet) -> str:
    return f"{len(rules.rules)} rules, {len(rules.enabled)} enabled"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _run(name: str, action: Callable[[argparse.Namespace, ControlsStore, float], str]) -> Callable[..., int]:
    """A command against the stack's tables."""
    return _offline(name, lambda args: action(args, store_of(args), time.time()), stored=True)


def _offline(
    name: str, action: Callable[[argparse.Namespace], str], *, stored: bool = False
) -> Callable[..., int]:
    """A command's run: print what it returns, or its error with what to do (exit status 2)."""

    def run(args: argparse.Namespace) -> int:
        from fraudwatch.domain.rules import RulesError

        try:
            print(action(args))
        except RulesError as exc:
            tail = "; fix the rule, nothing was stored" if stored else "; fix the rule"
            print(f"fraudwatch {name}: error: {exc}{tail}", file=sys.stderr)
            return 2
        except AwsCallError as exc:  # a failure at run time, not the operator's input
            hint = "is the stack up at its endpoint (`fraudwatch stack status`)?"
            print(f"fraudwatch {name}: error: {exc}; {hint}", file=sys.stderr)
            return 1
        except FraudwatchError as exc:
            print(f"fraudwatch {name}: error: {exc}", file=sys.stderr)
            return 2
        return 0

    return run


def _history_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    from infra.invoke import DEFAULT_BUNDLE
    from training.pipeline import add_label_delay_option

    parser.add_argument(
        "--history", required=required, help="a labelled transaction file (.csv or .parquet, with is_fraud)"
    )
    parser.add_argument("--lists", help="list entries to test with: CSV (list,value,why[,expires]) or JSON")
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="model bundle directory")
    add_label_delay_option(parser)


def _common(parser: argparse.ArgumentParser) -> None:
    from fraudwatch.adapters.controls import DEFAULT_MAX_AGE

    add_stack_options(parser)
    parser.add_argument("--who", default=getpass.getuser(), help="who makes the change (default: you)")
    parser.set_defaults(max_age=DEFAULT_MAX_AGE)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `lists` and `rules`."""
    lists = subparsers.add_parser(
        "lists",
        help="allow, block and review lists: add, remove, show",
        description="Entries of the stack's lists (ListsTable): blocked_merchants, allowed_users, "
        "review_categories... (docs/rules.md). The functions apply a change within 30 s.",
    )
    lists_commands = lists.add_subparsers(dest="lists_command", required=True, metavar="COMMAND")
    add = lists_commands.add_parser("add", help="add an entry (or a file's)", description="Add entries.")
    remove = lists_commands.add_parser("remove", help="remove an entry (or a file's)", description="Remove.")
    for parser in (add, remove):
        parser.add_argument("list", nargs="?", help="the list, e.g. blocked_merchants")
        parser.add_argument("value", nargs="?", help="the value, e.g. a merchant id")
        parser.add_argument("--file", help="entries in bulk: CSV (list,value,why[,expires]) or JSON")
        _common(parser)
    add.add_argument("--why", help="why the entry is there (required)")
    add.add_argument("--expires", help="when it stops counting: 30m, 12h, 7d, or an ISO 8601 time")
    add.set_defaults(run=_run("lists add", lists_add))
    remove.set_defaults(run=_run("lists remove", lists_remove))
    show = lists_commands.add_parser("show", help="show the entries", description="Show every entry.")
    show.add_argument("list", nargs="?", help="only this list")
    _common(show)
    show.set_defaults(run=_run("lists show", lists_show))

    rules = subparsers.add_parser(
        "rules",
        help="rules documents: validate, push, show, history, rollback, test on history",
        description="Rules documents (YAML or JSON, conditions in CEL; docs/rules.md) in the stack's "
        "RulesTable. The functions apply a pushed version within 30 s and never swap in one that fails.",
    )
    rules_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    validate = rules_commands.add_parser(
        "validate", help="compile a document, touching nothing", description="Compile a rules document."
    )
    validate.add_argument("file", help="the rules document (.yaml or .json)")
    validate.set_defaults(run=_offline("rules validate", rules_validate))
    test = rules_commands.add_parser(
        "test",
        help="replay a labelled history with the rules: per rule and beside the model alone",
        description="Replay a labelled history as `score-file` does, judge each payment with the rules "
        "(and --lists), and report per rule and list: fires, precision, recall, frauds added, genuine "
        "payments blocked, frauds allowed; and the decision mix of the model alone beside the rules'.",
    )
    test.add_argument("file", help="the rules document (.yaml or .json)")
    _history_options(test, required=True)
    test.set_defaults(run=_offline("rules test", rules_test))
    push = rules_commands.add_parser(
        "push", help="compile a document and put it in force", description="Compile, store and activate."
    )
    push.add_argument("file", help="the rules document (.yaml or .json)")
    push.add_argument("--note", help="why this version (shown by `rules history`)")
    _history_options(push, required=False)
    _common(push)
    push.set_defaults(run=_run("rules push", rules_push))
    show_rules = rules_commands.add_parser(
        "show", help="print the document in force (YAML)", description="Print a rules document."
    )
    show_rules.add_argument("--version", type=int, help="a pushed version's number (#), not the one in force")
    _common(show_rules)
    show_rules.set_defaults(run=_run("rules show", rules_show))
    history = rules_commands.add_parser(
        "history", help="every pushed version", description="List the pushed versions."
    )
    _common(history)
    history.set_defaults(run=_run("rules history", rules_history))
    rollback = rules_commands.add_parser(
        "rollback", help="put an earlier version back in force", description="Activate a pushed version."
    )
    rollback.add_argument("seq", type=int, help="the version's number (#) in `rules history`")
    _common(rollback)
    rollback.set_defaults(run=_run("rules rollback", rules_rollback))
