"""`fraudwatch models`: publish bundles, choose the champion and the challenger, roll back, compare, drift,
and the matured labels' daily recall and precision.

Every command talks to the stack's ModelsBucket and ModelsTable (found through its outputs); the
functions pick a change of the lineup up within MODELS_MAX_AGE_SECONDS (15 s), with no deploy
(docs/models.md). `drift` (every 15 minutes) and `matured` (daily) are the steps ModelOpsFunction runs on
its schedules (fraudwatch/model_ops.py, the same code): here by hand, with a report and options of their
own; `run-ops` invokes the function's real handler once, as its schedule would.
"""

from __future__ import annotations

import argparse
import getpass
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from fraudwatch.domain.decision import Decision, DecisionRecord
from fraudwatch.domain.drift import ALARM_PSI, SCORE, Reference, WindowDrift, drifting
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.matured import MaturedDay
from fraudwatch.errors import UsageError
from infra.cli import at_least, instant, number_from
from infra.state import add_stack_options

if TYPE_CHECKING:
    from fraudwatch.adapters.registry import LineupState, ModelRegistry
    from fraudwatch.model_ops import ModelOps

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "layers" / "model" / "bundle"
DEFAULT_CACHE = "/tmp/fraudwatch-models"  # noqa: S108 - fetched bundles, as the functions keep them


OPS_JOBS = ("drift", "matured", "activity")
"""`fraudwatch.model_ops.JOBS`, spelled again so that the command line starts without boto3 and numpy
(tests/adapters/test_models_cli.py checks they are the same)."""

# ---------------------------------------------------------------- the lineup


class LineupChange(NamedTuple):
    """The lineup before a command and after it: the same one when the command changed nothing."""

    before: LineupState
    after: LineupState

    @property
    def changed(self) -> bool:
        return self.after.seq != self.before.seq


def challenge(
    registry: ModelRegistry, version: str | None, *, by: str, note: str, now: float
) -> LineupChange:
    """Set a published version as challenger (None: no challenger); the champion stays."""
    before = registry.lineup()
    if version is not None:
        _published(registry, version)
        if version == before.champion:
            raise UsageError(f"{version} is the champion already: challenge with another version")
    after = registry.change(
        before, champion=before.champion, challenger=version or "", by=by, now=now,
        action="challenge" if version else "clear challenger", note=note,
    )  # fmt: skip
    return LineupChange(before, after)


def promote(registry: ModelRegistry, version: str | None, *, by: str, note: str, now: float) -> LineupChange:
    """Make a published version the champion (None: the challenger); a promoted challenger leaves its slot."""
    before = registry.lineup()
    version = version or before.challenger
    if not version:
        raise UsageError("no challenger to promote: name a version (`fraudwatch models list`)")
    _published(registry, version)
    challenger = "" if version == before.challenger else before.challenger
    after = registry.change(
        before, champion=version, challenger=challenger, by=by, now=now, action="promote", note=note
    )
    return LineupChange(before, after)


def rollback(registry: ModelRegistry, *, by: str, note: str, now: float) -> LineupChange:
    """Undo the last promotion still in force: its champion's predecessor is champion again ("": the
    layer's bundle). Promotions stack up and rollbacks pop them, so rolling back twice goes back two."""
    before = registry.lineup()
    promoted = champions(registry.history())
    if not promoted:
        raise UsageError("nothing to roll back to: the layer's bundle has been the only champion")
    previous = promoted[-2] if len(promoted) > 1 else ""
    challenger = "" if before.challenger == previous else before.challenger
    after = registry.change(
        before, champion=previous, challenger=challenger, by=by, now=now, action="rollback", note=note
    )
    return LineupChange(before, after)


def champions(history: list[LineupState]) -> list[str]:
    """The promotions in force, oldest first: each promotion stacks its champion, each rollback pops one."""
    stack: list[str] = []
    for state in history:
        if state.action == "promote":
            stack.append(state.champion)
        elif state.action == "rollback" and stack:
            stack.pop()
    return stack


def _published(registry: ModelRegistry, version: str) -> None:
    if registry.version(version) is None:
        raise UsageError(f"version {version!r} is not published: `fraudwatch models publish BUNDLE` first")


def describe(state: LineupState) -> str:
    """One line: who scores."""
    champion = state.champion or "the layer's bundle"
    return f"champion {champion}, challenger {state.challenger or 'none'}"


# ---------------------------------------------------------------- compare


class _Pair:
    """What `compare` keeps of one champion-challenger pair's decisions: the two decision mixes, counted as
    they are read, and the scores of the matured labelled ones (memory for those only)."""

    def __init__(self) -> None:
        self.decisions = 0
        self.champion: Counter[Decision] = Counter()
        self.challenger: Counter[Decision] = Counter()
        self.matured: list[tuple[float, float, bool, float, str]] = []
        """(champion's score, challenger's score, fraud, transaction epoch, card) of each matured label."""


def compare(decisions: Iterable[DecisionRecord], labels: dict[str, bool], *, matured_before: float) -> str:
    """Champion against challenger on the decisions that carry both: on their matured labels (decided
    before `matured_before`, labelled), the backtest's figures side by side; on all, the decision mix."""
    from training.backtest.metrics import figures
    from training.comparison import side_by_side

    pairs: dict[tuple[str, str], _Pair] = {}
    for d in decisions:
        if d.challenger is None:
            continue
        pair = pairs.setdefault((d.model_version, d.challenger.model_version), _Pair())
        pair.decisions += 1
        pair.champion[d.thresholds.decide(d.score)] += 1  # each at its own thresholds, rules aside
        pair.challenger[d.challenger.decision] += 1
        fraud = labels.get(d.transaction_id)
        if fraud is not None and (epoch := _epoch(d)) < matured_before:
            pair.matured.append((d.score, d.challenger.score, fraud, epoch, d.user_id))
    if not pairs:
        return "no decision carries a challenger's score: set one with `fraudwatch models challenge VERSION`"
    lines: list[str] = []
    for (champion, challenger), pair in sorted(pairs.items(), key=lambda item: -item[1].decisions):
        titles = {"champion": f"champion {champion}", "challenger": f"challenger {challenger}"}
        lines += [f"## {titles['champion']} vs {titles['challenger']}: {pair.decisions:,} decisions", ""]
        lines += _mix(pair, titles)
        truth = np.array([fraud for _, _, fraud, _, _ in pair.matured], dtype=bool)
        if not truth.any() or truth.all():
            lines += [f"{len(truth):,} matured labels, {int(truth.sum())} fraud: the figures need both", ""]
            continue
        epochs = np.array([epoch for *_, epoch, _ in pair.matured])
        cards = np.array([card for *_, card in pair.matured])
        results = {
            name: figures(np.array([m[column] for m in pair.matured]), truth, None, epochs, cards, 10)
            for name, column in (("champion", 0), ("challenger", 1))
        }
        lines += [f"On {len(truth):,} matured labels ({int(truth.sum())} fraud):", ""]
        lines += side_by_side(results, titles, {})
    return "\n".join(lines)


def _epoch(decision: DecisionRecord) -> float:
    return datetime.fromisoformat(decision.transaction_time).timestamp()


def _mix(pair: _Pair, titles: dict[str, str]) -> list[str]:
    """Each model's verdicts at its own thresholds (rules and lists aside: they are the same for both)."""
    rows = [
        f"| {kind.value} | {pair.champion[kind]:,} ({pair.champion[kind] / pair.decisions:.1%}) "
        f"| {pair.challenger[kind]:,} ({pair.challenger[kind] / pair.decisions:.1%}) |"
        for kind in Decision
    ]
    header = f"| decision mix | {titles['champion']} | {titles['challenger']} |"
    return [header, "| --- | --- | --- |", *rows, ""]


# ---------------------------------------------------------------- matured labels


def matured_report(matured: list[MaturedDay]) -> str:
    """A line a day."""
    if not matured:
        return "no matured day with labelled decisions"
    return "\n".join(
        f"{datetime.fromtimestamp(m.day, UTC):%Y-%m-%d}: {m.labelled:,} labelled, {m.frauds:,} fraud, "
        f"{m.alerts:,} alerted; recall {m.recall:.1%}, precision {m.precision:.1%}"
        for m in matured
    )


# ---------------------------------------------------------------- drift


def drift_report(version: str, reference: Reference, drifts: list[WindowDrift]) -> str:
    """Per window: rows, the score's PSI and the most drifted features; then what alarms."""
    lines = [f"drift of {version} against its training data (PSI; >= {ALARM_PSI} alarms in two windows)"]
    for d in drifts:
        order = np.argsort(-d.psi[: len(FEATURE_NAMES)])[:3]
        worst = ", ".join(f"{FEATURE_NAMES[i]} {d.psi[i]:.3f}" for i in order)
        lines.append(
            f"{datetime.fromtimestamp(d.start, UTC):%Y-%m-%dT%H:%M:%SZ}: {d.rows:,} rows, "
            f"score {d.of(SCORE):.3f}; most drifted: {worst}"
        )
    alarming = drifting(reference, drifts)
    lines.append(f"drifting: {', '.join(alarming)}" if alarming else "drifting: none")
    return "\n".join(lines)


# ---------------------------------------------------------------- the command line


class Stack(NamedTuple):
    outputs: dict[str, str]
    endpoint: str | None
    region: str


def _stack(args: argparse.Namespace) -> Stack:
    from infra.state import require_stack_outputs, stack_endpoint

    outputs = require_stack_outputs(Path(args.outputs))
    missing = [n for n in ("ModelsBucketName", "ModelsTableName", "DriftTableName") if n not in outputs]
    if missing:
        raise UsageError(f"the stack's outputs have no {', '.join(missing)}: deploy the current template")
    return Stack(outputs, args.endpoint or stack_endpoint(Path(args.outputs)), args.region)


def registry_of(args: argparse.Namespace) -> ModelRegistry:
    """The stack's registry, through its outputs and endpoint."""
    from fraudwatch.adapters.registry import ModelRegistry
    from infra.emulator import client

    stack = _stack(args)
    return ModelRegistry(
        stack.outputs["ModelsBucketName"],
        stack.outputs["ModelsTableName"],
        s3=client("s3", stack.endpoint, stack.region),
        dynamodb=client("dynamodb", stack.endpoint, stack.region),
    )


def _publish(args: argparse.Namespace) -> str:
    info = registry_of(args).publish(Path(args.bundle), published_by=args.who, now=time.time())
    return f"published {info.version} (sha256 {info.digest[:12]}; {info.summary or 'no test figures'})"


def _list(args: argparse.Namespace) -> str:
    registry = registry_of(args)
    state = registry.lineup()
    lines = [describe(state)]
    for v in registry.versions():
        role = (
            "champion"
            if v.version == state.champion
            else "challenger"
            if v.version == state.challenger
            else ""
        )
        lines.append(
            f"{v.version}  {role:10}  published by {v.published_by} at {_utc(v.published_at)}  {v.summary}"
        )
    return "\n".join(lines)


def _show(args: argparse.Namespace) -> str:
    info = registry_of(args).version(args.version)
    if info is None:
        raise UsageError(f"version {args.version!r} is not published")
    return "\n".join(
        [
            f"version: {info.version}",
            f"published_by: {info.published_by}",
            f"published_at: {_utc(info.published_at)}",
            f"digest: {info.digest}",
            f"thresholds: flag {info.thresholds.flag:g}, reject {info.thresholds.reject:g}",
            f"summary: {info.summary or 'no test figures'}",
        ]
    )


def _history(args: argparse.Namespace) -> str:
    return (
        "\n".join(
            f"#{s.seq} {_utc(s.changed_at)} "
            f"{s.changed_by}: {s.action} -> {describe(s)}" + (f" ({s.note})" if s.note else "")
            for s in registry_of(args).history()
        )
        or "no change yet: the layer's bundle is the champion"
    )


def _utc(epoch: float) -> str:
    """An epoch as the lineup commands print it: ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _challenge(args: argparse.Namespace) -> str:
    if not args.clear and not args.version:
        raise UsageError("name the version to challenge with, or --clear")
    version = None if args.clear else args.version
    change = challenge(registry_of(args), version, by=args.who, note=args.note or "", now=time.time())
    return _changed(change, f"{version} is already the challenger" if version else "there is no challenger")


def _promote(args: argparse.Namespace) -> str:
    change = promote(registry_of(args), args.version, by=args.who, note=args.note or "", now=time.time())
    return _changed(change, f"{change.after.champion} is already the champion")


def _rollback(args: argparse.Namespace) -> str:
    change = rollback(registry_of(args), by=args.who, note=args.note or "", now=time.time())
    return _changed(change, f"{describe(change.after)} already")


def _changed(change: LineupChange, unchanged: str) -> str:
    """What a change of the lineup did: its history entry, or why there is none."""
    if not change.changed:
        return f"{unchanged}: nothing changed"
    return f"#{change.after.seq}: {describe(change.after)}; the functions score with it within 15 s"


def _labels(path: Path) -> dict[str, bool]:
    """A labelled file's verdicts by transaction id."""
    from training.io import read_transactions

    frame = read_transactions(path, labelled=True)
    return dict(zip(frame["transaction_id"].astype(str), frame["is_fraud"].astype(bool), strict=True))


def _shadowed(stack: Stack) -> Iterator[DecisionRecord]:
    """Every stored decision that carries a challenger's score: a Scan whose filter leaves the others in
    DynamoDB (read, and billed, but neither sent nor parsed), page by page."""
    from fraudwatch.adapters.dynamodb import decision_of
    from infra.emulator import client

    paginator = client("dynamodb", stack.endpoint, stack.region).get_paginator("scan")
    pages = paginator.paginate(
        TableName=stack.outputs["DecisionsTableName"], FilterExpression="attribute_exists(challenger_version)"
    )
    for page in pages:
        yield from (decision_of(item) for item in page["Items"])


def _compare(args: argparse.Namespace) -> str:
    stack = _stack(args)
    matured_before = time.time() - args.label_delay_days * 86400
    labels = _stored_labels(stack) if args.labels is None else _labels(Path(args.labels))
    return compare(_shadowed(stack), labels, matured_before=matured_before)


def _stored_labels(stack: Stack) -> dict[str, bool]:
    """The verdicts of the labels the stream brought (LabelsTable), each transaction's latest."""
    from fraudwatch.adapters.labels import DynamoLabelStore
    from fraudwatch.domain.matured import latest_verdicts
    from infra.emulator import client

    store = DynamoLabelStore(_labels_table(stack), client("dynamodb", stack.endpoint, stack.region))
    return latest_verdicts(store.known_since(0))


def _labels_table(stack: Stack) -> str:
    if "LabelsTableName" not in stack.outputs:
        raise UsageError(
            "the stack's outputs have no LabelsTableName: deploy the current template, or pass --labels"
        )
    return stack.outputs["LabelsTableName"]


def _ops(args: argparse.Namespace, stack: Stack) -> ModelOps:
    """The scheduled steps on the stack's resources, with the command's options."""
    from fraudwatch.adapters.drift import DriftStore
    from fraudwatch.adapters.dynamodb import DynamoDecisionStore
    from fraudwatch.adapters.labels import DynamoLabelStore
    from fraudwatch.adapters.model_metrics import ModelMetrics
    from fraudwatch.model_ops import ModelOps, OpsSettings
    from infra.emulator import client

    outputs, dynamodb = stack.outputs, client("dynamodb", stack.endpoint, stack.region)
    settings = OpsSettings(
        outputs["ModelsBucketName"],
        outputs["ModelsTableName"],
        outputs["DriftTableName"],
        outputs["DecisionsTableName"],
        outputs.get("LabelsTableName", ""),
        stream_name=outputs.get("StreamName", ""),
        model_dir=Path(getattr(args, "layer_bundle", DEFAULT_BUNDLE)),
        model_cache_dir=Path(getattr(args, "cache", DEFAULT_CACHE)),
        window_seconds=getattr(args, "window_seconds", 900),
        windows=getattr(args, "windows", 2),
        settle_seconds=getattr(args, "settle_seconds", 120.0),
        min_rows=getattr(args, "min_rows", 100),
        label_delay_days=getattr(args, "label_delay_days", 7.0),
        matured_days=getattr(args, "days", 7),
    )
    return ModelOps(
        settings,
        registry=registry_of(args),
        drift_store=DriftStore(settings.drift_table, dynamodb),
        decisions=DynamoDecisionStore(settings.decisions_table, dynamodb),
        labels=DynamoLabelStore(settings.labels_table, dynamodb),
        metrics=ModelMetrics(client("cloudwatch", stack.endpoint, stack.region)),
    )


def _now(args: argparse.Namespace) -> float:
    return time.time() if args.now is None else args.now.timestamp()


def _matured(args: argparse.Namespace) -> str:
    stack = _stack(args)
    if args.labels is None:
        _labels_table(stack)  # the stack has one, or the user is told what to do
    labels = None if args.labels is None else _labels(Path(args.labels))
    return matured_report(_ops(args, stack).matured(_now(args), labels))


def _drift(args: argparse.Namespace) -> str:
    run = _ops(args, _stack(args)).drift(_now(args))
    if run.reference is None:
        raise UsageError(f"{run.version}'s card has no reference distribution: retrain it to measure drift")
    return drift_report(run.version, run.reference, run.drifts)


def _run_ops(args: argparse.Namespace) -> str:
    """The function's real handler, once per job, as its schedules invoke it."""
    import json

    from infra.emulator import emulator_environment
    from infra.invoke import LocalContext, load_handler

    stack = _stack(args)
    overrides = emulator_environment(stack.endpoint, stack.region) if stack.endpoint else {}
    try:
        handler = load_handler(
            stack.outputs,
            bundle_dir=Path(args.layer_bundle),
            endpoint_url=stack.endpoint,
            overrides=overrides | {"MODEL_CACHE_DIR": args.cache},
            function="ModelOpsFunction",
        )
    except KeyError as exc:  # an output the function's environment needs: a stack of an older template
        raise UsageError(f"{exc.args[0]}: deploy the current template") from exc
    jobs = list(OPS_JOBS) if args.job == "all" else [args.job]
    event = {} if args.now is None else {"time": args.now.isoformat()}
    return "\n".join(
        json.dumps(handler({"job": job, **event}, LocalContext("ModelOpsFunction"))) for job in jobs
    )


def _printed(action: Callable[[argparse.Namespace], str]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(action(args))
        return 0

    return run


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `models`."""
    models = subparsers.add_parser(
        "models",
        help="model versions and the lineup (publish, promote, rollback, ...), compare, drift, matured",
        description="The stack's model registry (docs/models.md): bundles by version, the champion that "
        "decides and a challenger scored in its shadow, changed without a deploy (in force within 15 s).",
    )
    commands = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")

    def command(name: str, text: str, action: Callable[[argparse.Namespace], str]) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=text, description=text)
        add_stack_options(parser)
        parser.set_defaults(run=_printed(action))
        return parser  # type: ignore[no-any-return]

    publish = command("publish", "upload a bundle to the registry under its version", _publish)
    publish.add_argument("bundle", nargs="?", default=str(DEFAULT_BUNDLE), help="default %(default)s")
    command("list", "the published versions and the lineup in force", _list)
    command("show", "one published version", _show).add_argument("version")
    command("history", "every change of the lineup: who, when, what", _history)
    challenger = command("challenge", "score a version in the champion's shadow", _challenge)
    challenger.add_argument("version", nargs="?")
    challenger.add_argument("--clear", action="store_true", help="no challenger any more")
    promoting = command("promote", "make a version (default: the challenger) the champion", _promote)
    promoting.add_argument("version", nargs="?")
    rolling_back = command("rollback", "make the previous champion champion again", _rollback)
    for parser in (publish, challenger, promoting, rolling_back):
        parser.add_argument("--who", default=getpass.getuser(), help="who makes the change (default: you)")
    for parser in (challenger, promoting, rolling_back):
        parser.add_argument("--note", help="why (shown by `models history`)")
    comparing = command("compare", "champion against challenger: matured labels, decision mix", _compare)
    comparing.add_argument(
        "--labels",
        help="a labelled file (transaction_id, is_fraud, ...); default: the labels the stream brought",
    )
    comparing.add_argument(
        "--label-delay-days", type=number_from(0), default=7.0, help="labels count once this old (default 7)"
    )
    maturing = command("matured", "daily recall and precision of the live decisions, published", _matured)
    maturing.add_argument(
        "--labels",
        help="a labelled file (transaction_id, is_fraud, ...); default: the labels the stream brought",
    )
    maturing.add_argument(
        "--label-delay-days",
        type=number_from(0),
        default=7.0,
        help="a day counts once this much older (default 7)",
    )
    maturing.add_argument("--days", type=at_least(1), default=7, help="matured days to publish (default 7)")
    drift = command("drift", "PSI of the closed windows, published as metrics (the scheduled step)", _drift)
    drift.add_argument("--windows", type=at_least(1), default=2, help="closed windows to measure (default 2)")
    drift.add_argument(
        "--window-seconds", type=at_least(1), default=900, help="as the function's (default 900)"
    )
    drift.add_argument(
        "--min-rows", type=at_least(1), default=100, help="a window with fewer is not measured"
    )
    drift.add_argument(
        "--settle-seconds",
        type=number_from(0),
        default=120.0,
        help="measure windows closed this long ago at least: the functions flush within a minute",
    )
    ops = command(
        "run-ops", "invoke the model operations function's real handler, as its schedules do", _run_ops
    )
    ops.add_argument("--job", choices=[*OPS_JOBS, "all"], default="all", help="default: all, in this order")
    for parser in (maturing, drift, ops):
        parser.add_argument(
            "--now",
            type=instant,
            metavar="TIME",
            help="when to measure, ISO 8601 with a UTC offset, e.g. 2026-12-06T09:00:00Z (default: now)",
        )
        parser.add_argument("--cache", default=DEFAULT_CACHE, help="where fetched bundles go")
        parser.add_argument(
            "--layer-bundle",
            default=str(DEFAULT_BUNDLE),
            help="the functions' own bundle, champion when the registry names none (default %(default)s)",
        )
