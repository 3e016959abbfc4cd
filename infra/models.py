"""`fraudwatch models`: publish bundles, choose the champion and the challenger, roll back, compare, drift,
and the matured labels' daily recall and precision.

Every command talks to the stack's ModelsBucket and ModelsTable (found through its outputs); the
functions pick a change of the lineup up within MODELS_MAX_AGE_SECONDS (15 s), with no deploy
(docs/models.md). `drift` (every window) and `matured` (daily) are the scheduled steps: whatever
schedules jobs runs them (the template has no scheduled function yet: docs/models.md); on the embedded
stack, where moto runs no schedule, they are run by hand or by the tests.
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
from fraudwatch.domain.drift import ALARM_PSI, COLUMNS, SCORE, Reference, psi
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.errors import UsageError
from infra.state import add_stack_options

if TYPE_CHECKING:
    from fraudwatch.adapters.drift import DriftStore
    from fraudwatch.adapters.registry import LineupState, ModelRegistry

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "layers" / "model" / "bundle"
NAMESPACE = "Fraudwatch"
DIMENSIONS = [{"Name": "service", "Value": "fraudwatch"}]


# ---------------------------------------------------------------- the lineup


def challenge(registry: ModelRegistry, version: str | None, *, by: str, note: str, now: float) -> LineupState:
    """Set a published version as challenger (None: no challenger); the champion stays."""
    before = registry.lineup()
    if version is not None:
        _published(registry, version)
        if version == before.champion:
            raise UsageError(f"{version} is the champion already: challenge with another version")
    return registry.change(
        before, champion=before.champion, challenger=version or "", by=by, now=now,
        action="challenge" if version else "clear challenger", note=note,
    )  # fmt: skip


def promote(registry: ModelRegistry, version: str | None, *, by: str, note: str, now: float) -> LineupState:
    """Make a published version the champion (None: the challenger); a promoted challenger leaves its slot."""
    before = registry.lineup()
    version = version or before.challenger
    if not version:
        raise UsageError("no challenger to promote: name a version (`fraudwatch models list`)")
    _published(registry, version)
    if version == before.champion:
        raise UsageError(f"{version} is the champion already")
    challenger = "" if version == before.challenger else before.challenger
    return registry.change(
        before, champion=version, challenger=challenger, by=by, now=now, action="promote", note=note
    )


def rollback(registry: ModelRegistry, *, by: str, note: str, now: float) -> LineupState:
    """Undo the last promotion still in force: its champion's predecessor is champion again ("": the
    layer's bundle). Promotions stack up and rollbacks pop them, so rolling back twice goes back two."""
    before = registry.lineup()
    promoted = champions(registry.history())
    if not promoted:
        raise UsageError("nothing to roll back to: the layer's bundle has been the only champion")
    previous = promoted[-2] if len(promoted) > 1 else ""
    challenger = "" if before.challenger == previous else before.challenger
    return registry.change(
        before, champion=previous, challenger=challenger, by=by, now=now, action="rollback", note=note
    )


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


def compare(decisions: Iterable[DecisionRecord], labels: dict[str, bool], *, matured_before: float) -> str:
    """Champion against challenger on the decisions that carry both: on their matured labels (decided
    before `matured_before`, labelled), the backtest's figures side by side; on all, the decision mix."""
    from training.backtest.metrics import figures
    from training.comparison import side_by_side

    pairs: dict[tuple[str, str], list[DecisionRecord]] = {}
    for d in decisions:
        if d.challenger is not None:
            pairs.setdefault((d.model_version, d.challenger.model_version), []).append(d)
    if not pairs:
        return "no decision carries a challenger's score: set one with `fraudwatch models challenge VERSION`"
    lines: list[str] = []
    for (champion, challenger), shared in sorted(pairs.items(), key=lambda item: -len(item[1])):
        titles = {"champion": f"champion {champion}", "challenger": f"challenger {challenger}"}
        lines += [f"## {titles['champion']} vs {titles['challenger']}: {len(shared):,} decisions", ""]
        lines += _mix(shared, titles)
        matured = [d for d in shared if d.transaction_id in labels and _epoch(d) < matured_before]
        truth = np.array([labels[d.transaction_id] for d in matured], dtype=bool)
        if not truth.any() or truth.all():
            lines += [f"{len(matured):,} matured labels, {int(truth.sum())} fraud: the figures need both", ""]
            continue
        epochs = np.array([_epoch(d) for d in matured])
        cards = np.array([d.user_id for d in matured])
        results = {
            "champion": figures(np.array([d.score for d in matured]), truth, None, epochs, cards, 10),
            "challenger": figures(
                np.array([d.challenger.score for d in matured if d.challenger]),
                truth,
                None,
                epochs,
                cards,
                10,
            ),
        }
        lines += [f"On {len(matured):,} matured labels ({int(truth.sum())} fraud):", ""]
        lines += side_by_side(results, titles, {})
    return "\n".join(lines)


def _epoch(decision: DecisionRecord) -> float:
    return datetime.fromisoformat(decision.transaction_time).timestamp()


def _mix(shared: list[DecisionRecord], titles: dict[str, str]) -> list[str]:
    """Each model's verdicts at its own thresholds (rules and lists aside: they are the same for both)."""
    champion = Counter(d.thresholds.decide(d.score) for d in shared)
    challenger = Counter(d.challenger.decision for d in shared if d.challenger)
    rows = [
        f"| {kind.value} | {champion[kind]:,} ({champion[kind] / len(shared):.1%}) "
        f"| {challenger[kind]:,} ({challenger[kind] / len(shared):.1%}) |"
        for kind in Decision
    ]
    header = f"| decision mix | {titles['champion']} | {titles['challenger']} |"
    return [header, "| --- | --- | --- |", *rows, ""]


# ---------------------------------------------------------------- matured labels


class MaturedDay(NamedTuple):
    """One UTC day of decisions whose labels have matured: recall and precision at the live decisions
    (FLAGGED or REJECTED as decided, rules and lists included); NaN where undefined."""

    day: int
    """Epoch seconds of its midnight (UTC)."""
    labelled: int
    frauds: int
    alerts: int
    recall: float
    precision: float


def matured_days(
    decisions: Iterable[DecisionRecord], labels: dict[str, bool], *, now: float, delay_days: float, days: int
) -> list[MaturedDay]:
    """The last `days` UTC days whose every transaction is at least `delay_days` old, oldest first: their
    labelled decisions' recall and precision. A younger day would read as better than it is, its
    chargebacks not back yet."""
    last = int((now - delay_days * 86400) // 86400) * 86400 - 86400
    first = last - (days - 1) * 86400
    by_day: dict[int, list[tuple[bool, bool]]] = {}
    for d in decisions:
        day = int(_epoch(d) // 86400) * 86400
        if first <= day <= last and d.transaction_id in labels:
            by_day.setdefault(day, []).append((labels[d.transaction_id], d.is_alert))
    found = []
    for day in sorted(by_day):
        pairs = by_day[day]
        frauds = sum(fraud for fraud, _ in pairs)
        alerts = sum(alert for _, alert in pairs)
        caught = sum(fraud and alert for fraud, alert in pairs)
        found.append(
            MaturedDay(
                day,
                len(pairs),
                frauds,
                alerts,
                caught / frauds if frauds else float("nan"),
                caught / alerts if alerts else float("nan"),
            )
        )
    return found


def publish_matured(cloudwatch: Any, matured: list[MaturedDay]) -> None:
    """MaturedRecall and MaturedPrecision, one datapoint a day at its midnight (undefined ones left out)."""
    data = [
        {
            "MetricName": name,
            "Dimensions": DIMENSIONS,
            "Timestamp": datetime.fromtimestamp(m.day, UTC),
            "Value": value,
        }
        for m in matured
        for name, value in (("MaturedRecall", m.recall), ("MaturedPrecision", m.precision))
        if not np.isnan(value)
    ]
    for at in range(0, len(data), 1000):
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data[at : at + 1000])


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


class WindowDrift(NamedTuple):
    """One closed window: its start, rows, and PSI per column (COLUMNS' order)."""

    start: int
    rows: int
    psi: np.ndarray

    def of(self, name: str) -> float:
        """One column's PSI."""
        return float(self.psi[COLUMNS.index(name)])


def window_drift(reference: Reference, windows: dict[int, np.ndarray], min_rows: int) -> list[WindowDrift]:
    """PSI per column of each window holding at least `min_rows` rows, oldest first."""
    found = []
    for start in sorted(windows):
        rows = int(windows[start][COLUMNS.index(SCORE)].sum())
        if rows >= min_rows:
            found.append(WindowDrift(start, rows, psi(reference.shares, windows[start])))
    return found


def drifting(reference: Reference, drifts: list[WindowDrift], windows: int = 2) -> list[str]:
    """The score and top features at or above the alarm's PSI in each of the last `windows` windows."""
    if len(drifts) < windows:
        return []
    names = [SCORE, *reference.watched]
    return [name for name in names if all(d.of(name) >= ALARM_PSI for d in drifts[-windows:])]


def publish_drift(cloudwatch: Any, reference: Reference, drifts: list[WindowDrift]) -> None:
    """ScorePSI, TopFeaturePSI (the most drifted top feature) and FeaturePSI per feature, per window."""
    for d in drifts:
        stamp = datetime.fromtimestamp(d.start, UTC)
        top = max(d.of(name) for name in reference.watched)
        data = [
            {"MetricName": "ScorePSI", "Dimensions": DIMENSIONS, "Timestamp": stamp, "Value": d.of(SCORE)},
            {"MetricName": "TopFeaturePSI", "Dimensions": DIMENSIONS, "Timestamp": stamp, "Value": top},
            *[
                {
                    "MetricName": "FeaturePSI",
                    "Dimensions": [*DIMENSIONS, {"Name": "feature", "Value": name}],
                    "Timestamp": stamp,
                    "Value": d.of(name),
                }
                for name in FEATURE_NAMES
            ],
        ]
        for at in range(0, len(data), 1000):
            cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data[at : at + 1000])


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


def measure_drift(
    store: DriftStore,
    cloudwatch: Any,
    version: str,
    reference: Reference,
    *,
    now: float,
    window_seconds: int,
    windows: int,
    min_rows: int,
) -> tuple[list[WindowDrift], str]:
    """The scheduled step: the last `windows` closed windows' PSI, published, and the report."""
    end = int(now // window_seconds) * window_seconds
    counts = store.windows(version, end - windows * window_seconds, end)
    drifts = window_drift(reference, counts, min_rows)
    publish_drift(cloudwatch, reference, drifts)
    return drifts, drift_report(version, reference, drifts)


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
        at = datetime.fromtimestamp(v.published_at, UTC).isoformat(timespec="seconds")
        lines.append(f"{v.version}  {role:10}  published by {v.published_by} at {at}  {v.summary}")
    return "\n".join(lines)


def _show(args: argparse.Namespace) -> str:
    info = registry_of(args).version(args.version)
    if info is None:
        raise UsageError(f"version {args.version!r} is not published")
    return "\n".join(f"{field}: {value}" for field, value in info._asdict().items())


def _history(args: argparse.Namespace) -> str:
    return (
        "\n".join(
            f"#{s.seq} {datetime.fromtimestamp(s.changed_at, UTC).isoformat(timespec='seconds')} "
            f"{s.changed_by}: {s.action} -> {describe(s)}" + (f" ({s.note})" if s.note else "")
            for s in registry_of(args).history()
        )
        or "no change yet: the layer's bundle is the champion"
    )


def _challenge(args: argparse.Namespace) -> str:
    if not args.clear and not args.version:
        raise UsageError("name the version to challenge with, or --clear")
    version = None if args.clear else args.version
    return _changed(challenge(registry_of(args), version, by=args.who, note=args.note or "", now=time.time()))


def _promote(args: argparse.Namespace) -> str:
    return _changed(
        promote(registry_of(args), args.version, by=args.who, note=args.note or "", now=time.time())
    )


def _rollback(args: argparse.Namespace) -> str:
    return _changed(rollback(registry_of(args), by=args.who, note=args.note or "", now=time.time()))


def _changed(state: LineupState) -> str:
    return f"#{state.seq}: {describe(state)}; the functions score with it within 15 s"


def _labels(path: Path) -> dict[str, bool]:
    """A labelled file's verdicts by transaction id."""
    from training.io import read_transactions

    frame = read_transactions(path, labelled=True)
    return dict(zip(frame["transaction_id"].astype(str), frame["is_fraud"].astype(bool), strict=True))


def _decisions(stack: Stack) -> Iterator[DecisionRecord]:
    """Every stored decision (a Scan: a daily job's read, not the hot path's)."""
    from fraudwatch.adapters.dynamodb import decision_of
    from infra.emulator import client

    paginator = client("dynamodb", stack.endpoint, stack.region).get_paginator("scan")
    for page in paginator.paginate(TableName=stack.outputs["DecisionsTableName"]):
        yield from (decision_of(item) for item in page["Items"])


def _compare(args: argparse.Namespace) -> str:
    matured_before = time.time() - args.label_delay_days * 86400
    return compare(_decisions(_stack(args)), _labels(Path(args.labels)), matured_before=matured_before)


def _matured(args: argparse.Namespace) -> str:
    from infra.emulator import client

    stack = _stack(args)
    now = time.time() if args.now is None else datetime.fromisoformat(args.now).timestamp()
    matured = matured_days(
        _decisions(stack),
        _labels(Path(args.labels)),
        now=now,
        delay_days=args.label_delay_days,
        days=args.days,
    )
    publish_matured(client("cloudwatch", stack.endpoint, stack.region), matured)
    return matured_report(matured)


def _drift(args: argparse.Namespace) -> str:
    from fraudwatch.adapters.bundle import read_bundle
    from fraudwatch.adapters.drift import DriftStore
    from infra.emulator import client

    stack = _stack(args)
    registry = registry_of(args)
    champion = registry.lineup().champion
    bundle = registry.fetch(champion, Path(args.cache)) if champion else Path(args.layer_bundle)
    contents = read_bundle(bundle)
    if contents.reference is None:
        raise UsageError(
            f"{contents.version}'s card has no reference distribution: retrain it to measure drift"
        )
    store = DriftStore(stack.outputs["DriftTableName"], client("dynamodb", stack.endpoint, stack.region))
    _, report = measure_drift(
        store,
        client("cloudwatch", stack.endpoint, stack.region),
        contents.version,
        contents.reference,
        now=time.time() if args.now is None else datetime.fromisoformat(args.now).timestamp(),
        window_seconds=args.window_seconds,
        windows=args.windows,
        min_rows=args.min_rows,
    )
    return report


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
    comparing.add_argument("--labels", required=True, help="a labelled file (transaction_id, is_fraud, ...)")
    comparing.add_argument(
        "--label-delay-days", type=float, default=7.0, help="labels count once this old (default 7)"
    )
    maturing = command("matured", "daily recall and precision of the live decisions, published", _matured)
    maturing.add_argument("--labels", required=True, help="a labelled file (transaction_id, is_fraud, ...)")
    maturing.add_argument(
        "--label-delay-days", type=float, default=7.0, help="a day counts once this much older (default 7)"
    )
    maturing.add_argument("--days", type=int, default=7, help="matured days to publish (default 7)")
    maturing.add_argument("--now", help="ISO 8601 time to measure at (default: now)")
    drift = command("drift", "PSI of the closed windows, published as metrics (the scheduled step)", _drift)
    drift.add_argument("--windows", type=int, default=2, help="closed windows to measure (default 2)")
    drift.add_argument("--window-seconds", type=int, default=900, help="as the function's (default 900)")
    drift.add_argument("--min-rows", type=int, default=100, help="a window with fewer is not measured")
    drift.add_argument("--now", help="ISO 8601 time to measure at (default: now)")
    drift.add_argument("--cache", default="/tmp/fraudwatch-models", help="where fetched bundles go")  # noqa: S108
    drift.add_argument(
        "--layer-bundle",
        default=str(DEFAULT_BUNDLE),
        help="the functions' own bundle, champion when the registry names none (default %(default)s)",
    )
