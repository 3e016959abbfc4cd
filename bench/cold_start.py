"""Cold start: a fresh process importing the scoring handler and loading the model, against the naive way.

Ours runs the way Lambda does: Python 3.12 in isolated mode with no site-packages, its path only the
handler's directory, the two layers as their own Makefiles build them (ML runtime trimmed and
byte-compiled, fraudwatch with Powertools) and boto3 as the runtime provides it; `-B` because /opt is
read-only (what the layers do not ship compiled is compiled at every cold start). LAMBDA_TASK_ROOT
is set, so Powertools' Tracer is enabled and patches botocore as it does in Lambda; a second run of ours
sets POWERTOOLS_TRACE_DISABLED=true, as a function deployed without tracing runs. Both score with the
bundle's compiled model and leave xgboost unimported (an on-demand init: AWS_LAMBDA_INITIALIZATION_TYPE
on-demand); a third run of ours is the init SnapStart snapshots (snap-start), which imports xgboost and
loads the Booster too, so that no alert after a restore waits for them.
Naive: the training environment (.venv: pandas, scikit-learn, full scipy) with the model loaded
through the scikit-learn wrapper `XGBClassifier`, the same boto3, Powertools and fraudwatch modules.

Each child measures itself (`time.perf_counter()`, and `time.process_time()` for its CPU time) from its
first line to the end of the model load; the parent also records the whole process's wall time
(interpreter start-up included).

Run: .venv/bin/python -m bench.cold_start
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import REPO_ROOT, Bundle, machine, median, model_bundle, p90, table, verdict
from fraudwatch.adapters.bundle import MODEL_FILE

BUDGET_MS = 150.0
RESTORE_BUDGET_MS = 50.0
"""The work after a SnapStart restore (issue 17), when the fresh-process init cannot meet BUDGET_MS."""
BUILD_DIR = REPO_ROOT / "build" / "bench"
APP = REPO_ROOT / "functions" / "scoring" / "app.py"
LAYERS = {
    "ml-runtime": ("layers/ml-runtime/Makefile", "build-MlRuntimeLayer"),
    "fraudwatch": ("layers/fraudwatch/Makefile", "build-FraudwatchLayer"),
}
HEAVY = ("xgboost", "scipy.sparse", "pandas", "sklearn", "pyarrow", "matplotlib", "aws_xray_sdk")

# Shared by both children: a `mark(step)` that records the time since the previous mark.
_PRELUDE = """
import sys, time
_t0, _c0 = time.perf_counter(), time.process_time()
_last = _t0
steps = {}
def mark(step):
    global _last
    now = time.perf_counter()
    steps[step] = (now - _last) * 1000
    _last = now
"""
_EPILOGUE = """
import json
heavy = [m for m in HEAVY if m in sys.modules]
total, cpu = (time.perf_counter() - _t0) * 1000, (time.process_time() - _c0) * 1000
extra = after_init() if "after_init" in globals() else {}
print(json.dumps({"steps": steps, "total": total, "cpu": cpu, "heavy": heavy, **extra}))
"""
_OURS = """
sys.path[:0] = PATHS
import os
import numpy
mark("numpy")
if os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] == "snap-start":  # load_model would import it
    import xgboost
    mark("xgboost (+ scipy.sparse)")
import boto3
mark("boto3")
import aws_lambda_powertools
import aws_lambda_powertools.utilities.batch
import aws_lambda_powertools.utilities.data_classes.kinesis_stream_event
mark("powertools")
import fraudwatch.kinesis_batch, fraudwatch.observability, fraudwatch.settings, fraudwatch.wiring
mark("fraudwatch (+ Logger, Metrics, Tracer)")
# time the model load inside the handler's own wiring (patched before the handler imports it)
_models = sys.modules["fraudwatch.adapters.model"]
_load, _spent = _models.load_model, [0.0]
def _timed_load(path):
    start = time.perf_counter()
    try:
        return _load(path)
    finally:
        _spent[0] += time.perf_counter() - start
_models.load_model = _timed_load
import importlib.util
_spec = importlib.util.spec_from_file_location("app", APP)
_app = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_app)
mark("handler module")
_scorer = _app.model.scorer
steps[f"model load ({_scorer})"] = _spent[0] * 1000
steps["settings + clients + processor"] = steps.pop("handler module") - steps[f"model load ({_scorer})"]
def after_init():
    # What SnapStart runs in a resumed environment: the handler's restore hook (new AWS clients around
    # the snapshot's model), timed apart from the init it follows.
    wall, cpu = time.perf_counter(), time.process_time()
    _app.after_restore()
    return {"restore": (time.perf_counter() - wall) * 1000, "restore cpu": (time.process_time() - cpu) * 1000}
"""
_NAIVE = """
import numpy, pandas, sklearn, xgboost
mark("numpy + pandas + sklearn + xgboost")
import boto3
mark("boto3")
import aws_lambda_powertools
import aws_lambda_powertools.utilities.batch
import aws_lambda_powertools.utilities.data_classes.kinesis_stream_event
mark("powertools")
import fraudwatch.kinesis_batch, fraudwatch.observability, fraudwatch.settings, fraudwatch.wiring
mark("fraudwatch (+ Logger, Metrics, Tracer)")
import os
from pathlib import Path
from typing import Any
classifier = xgboost.XGBClassifier()
classifier.load_model(str(Path(os.environ["MODEL_DIR"]) / MODEL_FILE))
mark("model load (XGBClassifier)")
settings = fraudwatch.settings.Settings.from_env()
session = boto3.Session()
config = fraudwatch.wiring.CLIENT_CONFIG
clients = [session.client(name, config=config) for name in ("dynamodb", "sns", "sqs")]
mark("settings + clients + processor")
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Build the layers, run both kinds of fresh process, print the tables."""
    args = _parser().parse_args(argv)
    bundle = model_bundle()
    paths = _lambda_paths(rebuild=args.rebuild)
    env = _environment(bundle)
    ours_code = _program(_OURS, PATHS=[str(APP.parent), *map(str, paths)], APP=str(APP))
    naive_code = _program(_NAIVE, MODEL_FILE=MODEL_FILE)
    ours_cmd = [sys.executable, "-I", "-S", "-B", "-c", ours_code]
    naive_cmd = [sys.executable, "-B", "-c", naive_code]
    for _ in range(args.warmup):  # page cache, not .pyc: -B writes none
        _child(ours_cmd, env)
        _child(naive_cmd, env)
    untraced_env = {**env, "POWERTOOLS_TRACE_DISABLED": "true"}
    snapshotted_env = {**env, "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"}
    ours, untraced, snapshotted, naive = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so load on the machine hits every way alike
        ours.append(_child(ours_cmd, env))
        untraced.append(_child(ours_cmd, untraced_env))
        snapshotted.append(_child(ours_cmd, snapshotted_env))
        naive.append(_child(naive_cmd, env))

    print("Cold start: fresh process, import the handler + load the model (ms)")
    print(f"machine: {machine()}")
    print(f"model:   {bundle.origin}")
    layers = ", ".join(str(p.relative_to(REPO_ROOT)) for p in paths)
    print(f"ours:    python -I -S -B, sys.path = handler dir + {layers}")
    print(f"         heavy modules imported: {', '.join(ours[0]['heavy']) or 'none'}")
    print(f"         tracing off: {', '.join(untraced[0]['heavy']) or 'none'}")
    print(f"         SnapStart's init: {', '.join(snapshotted[0]['heavy']) or 'none'}")
    print(f"naive:   python -B in .venv; heavy modules imported: {', '.join(naive[0]['heavy']) or 'none'}")
    print(f"runs:    {args.warmup} warm-up then {args.repeats} measured of each, interleaved\n")
    _print_way("ours (compiled model, Lambda layers; on-demand init)", ours)
    _print_way("ours, tracing off (POWERTOOLS_TRACE_DISABLED=true)", untraced)
    _print_way("ours, SnapStart's init (AWS_LAMBDA_INITIALIZATION_TYPE=snap-start: xgboost too)", snapshotted)
    _print_way("naive (pandas + scikit-learn wrapper, training environment)", naive)
    ours_median = median([r["total"] for r in ours])
    naive_median = median([r["total"] for r in naive])
    print(
        f"budget <= {BUDGET_MS:.0f} ms: ours median {ours_median:.0f} ms, p90 "
        f"{p90([r['total'] for r in ours]):.0f} ms ({verdict(ours_median, BUDGET_MS)}); "
        f"naive median {naive_median:.0f} ms ({naive_median / ours_median:.1f}x)"
    )
    restores = [r["restore"] for r in snapshotted]
    print(
        f"SnapStart (both functions are deployed with it): init median "
        f"{median([r['total'] for r in snapshotted]):.0f} ms, once per published version; "
        f"the work after a restore, the handler's hook, "
        f"median {median(restores):.1f} ms, p90 {p90(restores):.1f} ms "
        f"(CPU {median([r['restore cpu'] for r in snapshotted]):.1f} ms; "
        f"budget <= {RESTORE_BUDGET_MS:.0f} ms: {verdict(median(restores), RESTORE_BUDGET_MS)})"
    )
    untraced_median = median([r["total"] for r in untraced])
    print(f"tracing off: ours median {untraced_median:.0f} ms ({verdict(untraced_median, BUDGET_MS)})")
    print(
        f"CPU time of the same (less sensitive to other load): ours median "
        f"{median([r['cpu'] for r in ours]):.0f} ms, tracing off "
        f"{median([r['cpu'] for r in untraced]):.0f} ms, naive {median([r['cpu'] for r in naive]):.0f} ms"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="measured processes of each way (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured processes of each way first")
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild the ML runtime layer and boto3 (fraudwatch always is)"
    )
    return parser


# ---------------------------------------------------------------- the Lambda-like environment


def _lambda_paths(*, rebuild: bool) -> list[Path]:
    """The layers' python/ directories and the runtime's boto3, built under build/bench/."""
    for name, (makefile, target) in LAYERS.items():
        site = BUILD_DIR / name / "python"
        # A layer built before its Makefile or requirements last changed is stale (an ML runtime without
        # tl2cgen scores with XGBoost, and imports it at init).
        inputs = (REPO_ROOT / makefile).parent.glob("*")
        stale = site.is_dir() and max(path.stat().st_mtime for path in inputs) > site.stat().st_mtime
        if name == "fraudwatch" or rebuild or stale or not site.is_dir():
            print(f"building the {name} layer ({makefile}) ...", file=sys.stderr)
            _run(["make", "-s", "-f", makefile, target, f"ARTIFACTS_DIR={BUILD_DIR / name}"])
    runtime = BUILD_DIR / "runtime"
    if rebuild or not (runtime / "boto3").is_dir():
        version = importlib.metadata.version("boto3")
        print(f"installing boto3=={version} as the runtime provides it ...", file=sys.stderr)
        _run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(runtime), f"boto3=={version}"]
        )
        # the runtime's own boto3 ships compiled
        _run(
            [sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(runtime)]
        )
    return [BUILD_DIR / name / "python" for name in LAYERS] + [runtime]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def _environment(bundle: Bundle) -> dict[str, str]:
    """The function's environment: its settings (dummy names: building clients calls nothing) and Lambda's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(
        {
            "PROFILES_TABLE": "fraudwatch-profiles",
            "MERCHANT_PROFILES_TABLE": "fraudwatch-merchant-profiles",
            "DECISIONS_TABLE": "fraudwatch-decisions",
            "ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:fraudwatch-alerts",
            "QUARANTINE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/fraudwatch-quarantine",
            "MODEL_DIR": str(bundle.path),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_LAMBDA_FUNCTION_NAME": "fraudwatch-scoring",
            "LAMBDA_TASK_ROOT": str(APP.parent),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "POWERTOOLS_SERVICE_NAME": "fraudwatch",
            "POWERTOOLS_METRICS_NAMESPACE": "Fraudwatch",
        }
    )
    return env


def _program(body: str, **constants: object) -> str:
    header = "".join(f"{name} = {value!r}\n" for name, value in {"HEAVY": HEAVY, **constants}.items())
    return _PRELUDE + header + body + _EPILOGUE


def _child(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    wall = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"the child process failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process wall"] = wall
    return result


# ---------------------------------------------------------------- output


def _print_way(title: str, runs: list[dict[str, Any]]) -> None:
    rows = []
    for step in runs[0]["steps"]:
        values = [float(r["steps"][step]) for r in runs]
        rows.append((step, median(values), p90(values)))
    totals = [float(r["total"]) for r in runs]
    walls = [float(r["process wall"]) for r in runs]
    cpus = [float(r["cpu"]) for r in runs]
    rows.append(("total: import + model load (in the child)", median(totals), p90(totals)))
    rows.append(("  of which CPU time (user + sys)", median(cpus), p90(cpus)))
    rows.append(("process wall (interpreter start-up included)", median(walls), p90(walls)))
    print(f"== {title}")
    print(table(("step", "median ms", "p90 ms"), rows))
    print()


if __name__ == "__main__":
    raise SystemExit(main())
