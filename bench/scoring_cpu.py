"""Scoring CPU per record at batch 100: the scoring service on in-memory stores, against the naive way.

Ours: `ScoringService.process` on batches of 100 records (parse, one profile read, features and
profile updates, one model call: the compiled model's, or `inplace_predict` for a bundle without one;
decisions, SHAP reasons for alerts, batched writes). The breakdown's model call is also measured with
XGBoost scoring the same batches (`load_model(..., compiled=False)`), its passes alternated with ours.
Naive: what a per-request web service does, one record at a time: parse, read the profile, features,
a one-row pandas DataFrame through `XGBClassifier.predict_proba` (the same booster), decide, write.
Both use the same records, the same in-memory stores and the same model bundle.

Run: .venv/bin/python -m bench.scoring_cpu
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench._common import (
    Bundle,
    TransactionStream,
    machine,
    median,
    model_bundle,
    stream_parser,
    table,
    verdict,
)
from fraudwatch.adapters.bundle import MODEL_FILE
from fraudwatch.adapters.memory import (
    MemoryAlertPublisher,
    MemoryDecisionStore,
    MemoryProfileStore,
    MemoryQuarantine,
)
from fraudwatch.adapters.model import XGBoostModel, load_model
from fraudwatch.domain.controls import ControlsSource
from fraudwatch.domain.decision import DecisionRecord
from fraudwatch.domain.features import FEATURE_NAMES, apply, features
from fraudwatch.domain.ports import Model
from fraudwatch.domain.profile import UserProfile
from fraudwatch.domain.records import StreamRecord
from fraudwatch.domain.scoring import ScoringService
from fraudwatch.domain.transaction import parse_transaction
from infra.events import label_of, label_payload

BUDGET_US = 30.0
BATCH = 100
LABEL_SHARD = "shardId-000000000001"


@dataclass(frozen=True, slots=True)
class Run:
    """One timed pass: CPU and wall microseconds per record."""

    cpu_us: float
    wall_us: float
    model_cpu_us: float = 0.0
    """Of which the model call (naive: the DataFrame and predict_proba)."""


@dataclass(frozen=True, slots=True)
class Scene:
    """What the CPU benches time: the model, the timed batches, and the profiles warmed before them."""

    bundle: Bundle
    model: XGBoostModel
    timed: list[list[StreamRecord]]
    history: MemoryProfileStore


def scene(args: argparse.Namespace) -> Scene:
    """The model bundle, then `args.warmup_batches` of the generated stream into profiles, then
    `args.batches` to time (`stream_parser`'s options)."""
    bundle = model_bundle()
    model = load_model(bundle.path)
    stream = TransactionStream(users=args.users, seed=1, fraud_rate=0.01)
    warmup = stream.batches(args.warmup_batches)
    timed = stream.batches(args.batches)
    return Scene(bundle, model, timed, _warmed_profiles(model, warmup))


def main(argv: Sequence[str] | None = None) -> int:
    """Measure both ways in one run and print the tables."""
    args = _parser().parse_args(argv)
    setup = scene(args)
    bundle, model, timed, history = setup.bundle, setup.model, setup.timed, setup.history
    naive_records = [r for batch in timed for r in batch][: args.naive_records]
    gc.freeze()  # as the handler does after its cold start: the setup is left out of full collections
    ours = [_time_batched(model, history, timed) for _ in range(args.repeats)]
    naive = [_time_naive(model, bundle, history, naive_records) for _ in range(args.naive_repeats)]
    naive_single = [
        _time_naive(model, bundle, history, naive_records, n_jobs=1) for _ in range(args.naive_repeats)
    ]
    # the median of three instrumented passes: the explain step's cost varies a lot from pass to pass
    by_xgboost = load_model(bundle.path, compiled=False)
    instrumented = [
        (_breakdown(model, history, timed), _breakdown(by_xgboost, history, timed)) for _ in range(3)
    ]
    passes = sorted((ours for ours, _ in instrumented), key=lambda b: b[0]["total"])
    phases, alerts = passes[1]
    xgboost_calls = [xgb[0]["score"] for _, xgb in instrumented]

    _print_header(args, bundle, alerts)
    _print_comparison(ours, naive, naive_single, args)
    _print_breakdown(phases, len(timed) * BATCH, model.scorer)
    print(
        f"model call by XGBoost (inplace_predict) on the same batches, alternated: "
        f"{median(xgboost_calls) / (len(timed) * BATCH) * 1e6:.2f} us/rec (median of 3)"
    )
    _print_what_ifs(model, history, timed, median([r.cpu_us for r in ours]))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = stream_parser(__doc__.splitlines()[0], batches=200, repeats="timed passes of ours")
    parser.add_argument("--naive-records", type=int, default=500, help="records per naive pass")
    parser.add_argument("--naive-repeats", type=int, default=3, help="timed passes of naive (default 3)")
    return parser


# ---------------------------------------------------------------- ours


def _service(
    model: Model, history: MemoryProfileStore, controls: ControlsSource | None = None
) -> ScoringService:
    """A service on fresh in-memory stores holding the warmed profiles (and controls: bench/rules.py)."""
    return ScoringService(
        profiles=_profile_store(history),
        decisions=MemoryDecisionStore(),
        alerts=MemoryAlertPublisher(),
        quarantine=MemoryQuarantine(),
        model=model,
        controls=controls,
    )


def _profile_store(history: MemoryProfileStore) -> MemoryProfileStore:
    store = MemoryProfileStore()
    store.items.update(history.items)
    store.merchant_items.update(history.merchant_items)
    return store


def _warmed_profiles(model: XGBoostModel, warmup: list[list[StreamRecord]]) -> MemoryProfileStore:
    """The stored profiles after the warm-up batches and their labels: every pass starts from this history.

    Each warm-up transaction's label is fed back too, so the timed transactions' merchants have
    profiles to read, as they do in production.
    """
    profiles = MemoryProfileStore()
    service = ScoringService(
        profiles=profiles,
        decisions=MemoryDecisionStore(),
        alerts=MemoryAlertPublisher(),
        quarantine=MemoryQuarantine(),
        model=model,
    )
    for batch in warmup:
        service.process(batch)
    for batch in warmup:
        service.process([_label_of(record) for record in batch])
    return profiles


def _label_of(record: StreamRecord) -> StreamRecord:
    """A genuine label for a transaction record, known when the record arrived, on the labels' shard."""
    genuine = {**json.loads(record.data), "is_fraud": False}
    label = label_of(genuine, datetime.fromtimestamp(record.arrival_epoch, UTC).isoformat())
    return StreamRecord(LABEL_SHARD, record.sequence_number, label_payload(label), record.arrival_epoch)


def _time_batched(
    model: Model,
    history: MemoryProfileStore,
    timed: list[list[StreamRecord]],
    controls: ControlsSource | None = None,
) -> Run:
    """Fresh stores holding the warmed profiles, then every timed batch through `process`."""
    service = _service(model, history, controls)
    decided = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for batch in timed:
        decided += len(service.process(batch).decisions)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    records = len(timed) * BATCH
    if decided != records:
        raise SystemExit(f"only {decided} of {records} records were decided: the benchmark is broken")
    return Run(cpu / records * 1e6, wall / records * 1e6)


def _breakdown(
    model: XGBoostModel, history: MemoryProfileStore, timed: list[list[StreamRecord]]
) -> tuple[dict[str, float], int]:
    """CPU seconds per phase over the timed batches, from timers around each step of `process`.

    The timers wrap per-batch calls only (the service's steps and its ports), so they add a few
    microseconds per batch, not per record.
    """
    spent: dict[str, float] = defaultdict(float)
    proxy = _ModelProxy(model)
    _wrap(proxy, "score", "score", spent)
    _wrap(proxy, "explain", "explain", spent)
    service = _service(proxy, history)
    # ScoringService's private steps: if they are renamed, this fails loudly rather than lie.
    for step in ("_parse", "_apply", "_decide", "_write"):
        _wrap(service, step, step, spent)
    _wrap(service._profiles, "get_many", "profile_read", spent)
    alerts = 0
    start = time.process_time()
    for batch in timed:
        alerts += sum(d.is_alert for d in service.process(batch).decisions)
    spent["total"] = time.process_time() - start
    return dict(spent), alerts


class _ModelProxy:
    """The model behind instance attributes that the breakdown can wrap without touching the real one."""

    def __init__(self, model: XGBoostModel) -> None:
        self.version = model.version
        self.feature_names = model.feature_names
        self.thresholds = model.thresholds
        self.score = model.score
        self.explain = model.explain


def _wrap(obj: object, attribute: str, phase: str, spent: dict[str, float]) -> None:
    inner: Callable[..., Any] = getattr(obj, attribute)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[phase] += time.process_time() - start

    setattr(obj, attribute, timed)


# ---------------------------------------------------------------- naive


class PerRecordScorer:
    """The naive way: everything per record, the model through a one-row DataFrame and predict_proba."""

    def __init__(
        self, model: XGBoostModel, bundle: Bundle, history: MemoryProfileStore, n_jobs: int | None = None
    ) -> None:
        import pandas as pd
        import xgboost as xgb

        self._pd = pd
        self._classifier = xgb.XGBClassifier(n_jobs=n_jobs)
        self._classifier.load_model(str(bundle.path / MODEL_FILE))
        self._model = model  # for thresholds and the same SHAP reasons on alerts
        self.profiles = _profile_store(history)
        self.decisions = MemoryDecisionStore()
        self.alerts = MemoryAlertPublisher()
        self.model_seconds = 0.0

    def handle(self, record: StreamRecord) -> DecisionRecord:
        """Score one record as one request."""
        tx = parse_transaction(record.data, received_at=record.arrival_epoch)
        users, merchants, _ = self.profiles.get_many([tx.user_id], [tx.merchant_id])
        profile = users.get(tx.user_id) or UserProfile(tx.user_id)
        row = features(profile, merchants.get(tx.merchant_id), tx)
        apply(profile, tx)
        profile.mark_applied(tx.transaction_id, record.shard_id, record.sequence_number)
        start = time.process_time()
        frame = self._pd.DataFrame([row], columns=list(FEATURE_NAMES))
        score = float(self._classifier.predict_proba(frame)[0, 1])
        self.model_seconds += time.process_time() - start
        verdict = self._model.thresholds.decide(score)
        reasons = self._model.explain([row], 3)[0] if verdict.value != "APPROVED" else ()
        decision = DecisionRecord.for_transaction(
            tx,
            decision=verdict,
            score=score,
            model_version=self._model.version,
            thresholds=self._model.thresholds,
            decided_at=datetime.now(UTC).isoformat(),
            reasons=reasons,
        )
        self.decisions.put_many([decision])
        if decision.is_alert:
            self.alerts.publish_many([decision])
        self.profiles.put_many([profile])
        return decision


def _time_naive(
    model: XGBoostModel,
    bundle: Bundle,
    history: MemoryProfileStore,
    records: list[StreamRecord],
    n_jobs: int | None = None,
) -> Run:
    scorer = PerRecordScorer(model, bundle, history, n_jobs)
    cpu, wall = time.process_time(), time.perf_counter()
    for record in records:
        scorer.handle(record)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    n = len(records)
    return Run(cpu / n * 1e6, wall / n * 1e6, scorer.model_seconds / n * 1e6)


# ---------------------------------------------------------------- output


def _print_header(args: argparse.Namespace, bundle: Bundle, alerts: int) -> None:
    print("Scoring CPU per record, batch of 100 (parse -> features -> score -> decision), in-memory stores")
    print(f"machine: {machine()}")
    print(f"model:   {bundle.origin}")
    records = args.batches * BATCH
    print(
        f"records: {args.users} users, {args.warmup_batches} warm-up batches, then {args.batches} timed "
        f"batches ({records} records, {alerts} alerts = {alerts / records:.1%})"
    )
    print()


def _print_comparison(
    ours: list[Run], naive: list[Run], naive_single: list[Run], args: argparse.Namespace
) -> None:
    ways = (
        ("batched (ScoringService.process)", f"{args.repeats} x {args.batches * BATCH}", ours),
        (
            "naive (per record, DataFrame + predict_proba)",
            f"{args.naive_repeats} x {args.naive_records}",
            naive,
        ),
        ("naive, XGBClassifier(n_jobs=1)", f"{args.naive_repeats} x {args.naive_records}", naive_single),
    )
    rows = [
        (
            name,
            passes,
            median([r.cpu_us for r in runs]),
            median([r.wall_us for r in runs]),
            min(r.cpu_us for r in runs),
            max(r.cpu_us for r in runs),
            median([r.model_cpu_us for r in runs]) if runs is not ours else "",
        )
        for name, passes, runs in ways
    ]
    headers = ("way", "passes x records", "CPU us/rec", "wall us/rec", "CPU min", "CPU max", "model call")
    print(table(headers, rows))
    ours_cpu, naive_cpu = median([r.cpu_us for r in ours]), median([r.cpu_us for r in naive_single])
    print(
        f"\nbudget <= {BUDGET_US:.0f} us/record: batched {ours_cpu:.1f} us ({verdict(ours_cpu, BUDGET_US)}); "
        f"naive (n_jobs=1) / batched = {naive_cpu / ours_cpu:,.0f}x"
    )
    print("model call = CPU us/record in the one-row DataFrame + predict_proba alone")
    print()


def _print_breakdown(spent: dict[str, float], records: int, scorer: str) -> None:
    """Where the batched path's time goes (CPU time, the median instrumented pass)."""
    score, explain = spent.get("score", 0.0), spent.get("explain", 0.0)
    parts = [
        ("parse + validate (json, contract)", spent["_parse"]),
        ("profile read (store get, JSON decode)", spent["profile_read"]),
        ("features + profile update", spent["_apply"]),
        (f"score (one model call: {scorer})", score),
        ("explain (SHAP, alerts only)", explain),
        ("decide + decision records", spent["_decide"] - score - explain),
        ("writes (decisions, alerts, profile JSON encode)", spent["_write"]),
    ]
    other = spent["total"] - sum(seconds for _, seconds in parts)
    parts.append(("rest of process (grouping, report)", other))
    total = spent["total"]
    rows = [(name, seconds / records * 1e6, f"{seconds / total:.0%}") for name, seconds in parts]
    rows.append(("total (instrumented pass)", total / records * 1e6, "100%"))
    print("Breakdown of the batched path (CPU us/record, the median of 3 instrumented passes):")
    print(table(("phase", "us/rec", "share"), rows))


# ---------------------------------------------------------------- what would bring it down


def _print_what_ifs(
    model: XGBoostModel, history: MemoryProfileStore, timed: list[list[StreamRecord]], as_is: float
) -> None:
    """The same passes without the explain step, to size what the reasons cost (the domain is untouched)."""
    silent = _ModelProxy(model)
    silent.explain = lambda rows, top: [() for _ in rows]
    rows = [("as is", as_is)]
    rows.append(
        (
            "no explain at all (lower bound)",
            median([_time_batched(silent, history, timed).cpu_us for _ in range(3)]),
        )
    )
    print("\nWhat-if (batched CPU us/record, median of 3 passes):")
    print(table(("variant", "CPU us/rec"), rows))


if __name__ == "__main__":
    raise SystemExit(main())
