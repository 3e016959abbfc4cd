"""The real handler's CPU per record at batch 100, beside the scoring service alone and the naive way.

Real handler: `lambda_handler` of functions/scoring/app.py, loaded as Lambda loads it (its module-scope
wiring, then `gc.freeze()`), called with Lambda-shaped Kinesis events of 100 records: Powertools'
batch processing and `KinesisStreamRecord`s, `ScoringBatchProcessor`, `record_batch`'s EMF metrics and
log line, `inject_lambda_context`, `log_metrics`' flush. AWS I/O is stubbed: the processor's service
is rebuilt on the in-memory stores of bench/scoring_cpu.py holding the same warmed profiles, with the
rules and lists configured as the template deploys them and no rules document pushed. The tracer is
disabled (POWERTOOLS_TRACE_DISABLED): its cost is per batch, and outside Lambda it has no daemon.
What the handler prints (EMF and logs) goes to /dev/null through file descriptor 1, so the writes
are paid as in Lambda.
Service: `ScoringService.process` on the same batches (what bench/scoring_cpu.py times).
Naive: bench/scoring_cpu.py's per-record scorer (a one-row DataFrame + `predict_proba`, n_jobs=1).
The handler runs twice a pass, the two alternated event by event (so that the load of a shared machine
weighs on both alike): scoring with the bundle's compiled model (when it has one), and with XGBoost's
`inplace_predict` (`load_model(..., compiled=False)`), the way before compiled models.
The passes alternate, so a noisy neighbour weighs on every way alike.
Every way runs the scoring path as the layer ships it, compiled by mypyc (layers/fraudwatch/compile.py:
the bench builds it into build/compiled and runs itself again there); `--source` runs it from its
Python sources instead.

Run: .venv/bin/python -m bench.handler_cpu
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from bench._common import (
    DOMAIN_BUILDS,
    REPO_ROOT,
    Bundle,
    domain_build,
    machine,
    median,
    rerun_compiled,
    stream_parser,
    table,
    verdict,
)
from bench.cold_start import _environment
from bench.scoring_cpu import BATCH, _profile_store, _service, _time_batched, _time_naive, scene
from fraudwatch.adapters.drift import FlushingDriftRecorder
from fraudwatch.adapters.memory import (
    MemoryAlertPublisher,
    MemoryDecisionStore,
    MemoryDriftStore,
    MemoryProfileStore,
    MemoryQuarantine,
)
from fraudwatch.adapters.model import load_model
from fraudwatch.domain.controls import Controls, ControlsSource, FixedControls
from fraudwatch.domain.drift import reference_of
from fraudwatch.domain.features import FEATURE_NAMES
from fraudwatch.domain.lineup import FixedLineup, Lineup
from fraudwatch.domain.ports import Model
from fraudwatch.domain.records import StreamRecord
from fraudwatch.domain.scoring import ScoringService
from infra.events import lambda_record
from infra.invoke import LocalContext

BUDGET_US = 30.0
APP = REPO_ROOT / "functions" / "scoring" / "app.py"


def main(argv: Sequence[str] | None = None) -> int:
    """Time the three ways in one run, alternating, and print the table."""
    args = _parser().parse_args(argv)
    if not args.source and domain_build() == "source":
        rerun_compiled("bench.handler_cpu", sys.argv[1:] if argv is None else argv)
    setup = scene(args)
    bundle, model, timed, history = setup.bundle, setup.model, setup.timed, setup.history
    events = [kinesis_event(batch) for batch in timed]
    naive_records = [r for batch in timed for r in batch][: args.naive_records]
    app = load_app(bundle)  # freezes what its cold start built, as in Lambda
    controls = FixedControls(Controls())
    gc.freeze()  # and the bench's own setup

    challenger = load_model(bundle.path)  # a second copy: the shadow scores with its own booster
    by_xgboost = load_model(bundle.path, compiled=False)
    handler: list[float] = []
    handler_xgboost: list[float] = []
    shadowed: list[float] = []
    service: list[float] = []
    naive: list[float] = []
    for i in range(args.repeats):
        compiled_us, xgboost_us = _time_handler_pair(
            app, _service(model, history, controls), _service(by_xgboost, history, controls), events
        )
        handler.append(compiled_us)
        handler_xgboost.append(xgboost_us)
        shadowed.append(_time_handler(app, _shadowed_service(model, challenger, history, controls), events))
        service.append(_time_batched(model, history, timed, controls).cpu_us)
        if i < args.naive_repeats:
            naive.append(_time_naive(model, bundle, history, naive_records, n_jobs=1).cpu_us)

    print("Real handler CPU per record, batch of 100 (Powertools batch, metrics, logs; AWS stubbed)")
    print(f"machine: {machine()}")
    print(f"model:   {bundle.origin}; scored by: {getattr(model, 'scorer', 'xgboost')}")
    print(f"domain:  {DOMAIN_BUILDS[domain_build()]}")
    print(
        f"records: {args.users} users, {args.warmup_batches} warm-up batches, then {args.batches} timed "
        f"batches ({args.batches * BATCH} records); {args.repeats} alternating passes "
        f"(naive: {args.naive_repeats} x {args.naive_records} records)\n"
    )
    rows = [
        ("real handler (lambda_handler, Powertools)", median(handler), min(handler), max(handler)),
        (
            "  the same, scored by XGBoost",
            median(handler_xgboost),
            min(handler_xgboost),
            max(handler_xgboost),
        ),
        ("  with a challenger and drift counted", median(shadowed), min(shadowed), max(shadowed)),
        ("service alone (ScoringService.process)", median(service), min(service), max(service)),
        ("naive (per record, DataFrame, n_jobs=1)", median(naive), min(naive), max(naive)),
    ]
    print(table(("way", "CPU us/rec (median)", "min", "max"), rows))
    wrapper = [h - s for h, s in zip(handler, service, strict=True)]
    added = [s - h for s, h in zip(shadowed, handler, strict=True)]
    saved = [x - h for x, h in zip(handler_xgboost, handler, strict=True)]
    print(f"\nthe handler's wrapper (paired: handler - service): {median(wrapper):.1f} us/record")
    print(f"a challenger and drift (paired: with them - without): {median(added):+.1f} us/record")
    print(
        f"the compiled model (paired: XGBoost scoring - compiled): {median(saved):+.1f} us/record "
        f"(min {min(saved):+.1f}, max {max(saved):+.1f})"
    )
    print(
        f"budget <= {BUDGET_US:.0f} us/record for the real handler: {median(handler):.1f} us "
        f"({verdict(median(handler), BUDGET_US)}); naive / handler = {median(naive) / median(handler):,.0f}x"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = stream_parser(__doc__.splitlines()[0], batches=100, repeats="alternating passes of each way")
    parser.add_argument("--naive-records", type=int, default=300, help="records per naive pass")
    parser.add_argument("--naive-repeats", type=int, default=3, help="naive passes (default 3)")
    parser.add_argument(
        "--source",
        action="store_true",
        help="run the scoring path from its sources (default: compiled by mypyc, as the layer ships it)",
    )
    return parser


def kinesis_event(batch: Sequence[StreamRecord]) -> dict[str, Any]:
    """A batch as Lambda's Kinesis event source delivers it, each record put with its user id as key."""
    return {
        "Records": [
            lambda_record(
                record.data,
                partition_key=json.loads(record.data)["user_id"],
                sequence_number=record.sequence_number,
                arrival=record.arrival_epoch,
                shard_id=record.shard_id,
            )
            for record in batch
        ]
    }


def load_app(bundle: Bundle) -> ModuleType:
    """functions/scoring/app.py imported as Lambda imports it, in the function's environment."""
    env = _environment(bundle)
    env.update(
        {
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "LISTS_TABLE": "fraudwatch-lists",
            "RULES_TABLE": "fraudwatch-rules",
        }
    )
    os.environ.update(env)
    spec = importlib.util.spec_from_file_location("bench_scoring_app", APP)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the handler from {APP}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shadowed_service(
    model: Model, challenger: Model, history: MemoryProfileStore, controls: ControlsSource
) -> ScoringService:
    """The service as issue 19 runs it: a challenger scored in the champion's shadow, drift counted per batch
    against a reference (a synthetic one: only its shape matters to the CPU), written once a minute."""
    rng = np.random.default_rng(0)
    reference = reference_of(rng.normal(size=(1000, len(FEATURE_NAMES))), rng.uniform(size=1000))
    lineup = Lineup(model, model.thresholds, challenger, challenger.thresholds, reference)
    return ScoringService(
        profiles=_profile_store(history),
        decisions=MemoryDecisionStore(),
        alerts=MemoryAlertPublisher(),
        quarantine=MemoryQuarantine(),
        models=FixedLineup(lineup),
        controls=controls,
        drift=FlushingDriftRecorder(MemoryDriftStore()),
    )


def _time_handler_pair(
    app: ModuleType, first: ScoringService, second: ScoringService, events: list[dict[str, Any]]
) -> tuple[float, float]:
    """`_time_handler` for two services at once, alternating them event by event."""
    context = LocalContext()
    handle: Callable[[dict[str, Any], Any], dict[str, Any]] = app.lambda_handler
    spent = [0.0, 0.0]
    with _stdout_to_devnull():
        for event in events:
            for i, service in enumerate((first, second)):
                app.processor.service = service
                cpu = time.process_time()
                failed = handle(event, context)["batchItemFailures"]
                spent[i] += time.process_time() - cpu
                if failed:
                    raise SystemExit("the handler reported failures: the benchmark is broken")
    records = len(events) * BATCH
    for service in (first, second):
        if len(_decisions(service).items) != records:
            raise SystemExit("not every record was decided: the benchmark is broken")
    return spent[0] / records * 1e6, spent[1] / records * 1e6


def _time_handler(app: ModuleType, service: ScoringService, events: list[dict[str, Any]]) -> float:
    """Every event through `lambda_handler` with the processor's service on in-memory stores."""
    app.processor.service = service
    context = LocalContext()
    handle: Callable[[dict[str, Any], Any], dict[str, Any]] = app.lambda_handler
    with _stdout_to_devnull():
        cpu = time.process_time()
        for event in events:
            if handle(event, context)["batchItemFailures"]:
                raise SystemExit("the handler reported failures: the benchmark is broken")
        cpu = time.process_time() - cpu
    records = len(events) * BATCH
    decided = len(_decisions(service).items)
    if decided != records:
        raise SystemExit(f"only {decided} of {records} records were decided: the benchmark is broken")
    return cpu / records * 1e6


def _decisions(service: ScoringService) -> MemoryDecisionStore:
    store = service._decisions
    if not isinstance(store, MemoryDecisionStore):
        raise SystemExit("the service is not on in-memory stores: the benchmark is broken")
    return store


@contextlib.contextmanager
def _stdout_to_devnull() -> Iterator[None]:
    """Point file descriptor 1 at /dev/null: the EMF and log lines are written, as in Lambda, unseen."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(devnull)
        os.close(saved)


if __name__ == "__main__":
    raise SystemExit(main())
