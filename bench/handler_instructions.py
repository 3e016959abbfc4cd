"""Instructions per record of the real handler at batch 100 (valgrind's callgrind), beside the naive way.

CPU time on these shared 2-core machines moves by a fifth from one run to the next, as much as most
changes to the scoring path. An instruction count does not: the same code on the same records counts
the same to within 0.2 %, whatever else the machine runs. So this bench runs bench/handler_cpu.py's
scene (the same records, warmed profiles, `lambda_handler` loaded as Lambda loads it, AWS on in-memory
stores) in a child process under `valgrind --tool=callgrind --instr-atstart=no`, and counts only the
timed batches (and then the naive way's records, per record as bench/scoring_cpu.py's naive scorer
does them), switched on and dumped with `callgrind_control` around each. It does so twice: on the
scoring path compiled by mypyc as the layer ships it (layers/fraudwatch/compile.py, built into
build/compiled), then from its Python sources. Instructions are not time:
they leave out cache misses and the CPU's parallelism (386k instructions and 40.3 µs a record on one
quiet run: about 9,600 a µs here); they are for comparing two versions of the code.

Needs valgrind (Debian's `valgrind` package). Takes about two minutes with the defaults.

Run: .venv/bin/python -m bench.handler_instructions
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench._common import REPO_ROOT, compiled_environment, domain_build, machine, table

PHASES = ("handler", "naive")
BUILDS = ("compiled", "source")
"""The scoring path as the layer ships it (mypyc, layers/fraudwatch/compile.py), and from its sources."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the child under callgrind on each build and print instructions per record of each way."""
    args = _parser().parse_args(argv)
    if args.child:
        return _child(args)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(
                f"{tool} not found: install Debian's valgrind package (apt-get install valgrind)"
            )
    environments = {"compiled": compiled_environment(), "source": dict(os.environ)}
    counted: dict[str, dict[str, int]] = {}
    for build in BUILDS:
        print(f"the handler's scene under callgrind, {build}: {args.batches} batches of 100, about a minute")
        counted[build] = _run_child(args, environments[build], naive=build == "compiled")
    records = {"handler": args.batches * 100, "naive": args.naive_records}
    print("\nInstructions per record at batch 100 (callgrind; the timed part only)")
    print(f"machine: {machine()}\n")
    rows = [
        (
            f"handler, {build}",
            f"{records['handler']:,}",
            f"{counted[build]['handler']:,}",
            _per(counted[build], "handler", records),
        )
        for build in BUILDS
    ]
    rows.append(
        (
            "naive",
            f"{records['naive']:,}",
            f"{counted['compiled']['naive']:,}",
            _per(counted["compiled"], "naive", records),
        )
    )
    print(table(("way", "records", "instructions", "per record"), rows))
    compiled, source = (counted[build]["handler"] for build in BUILDS)
    naive = counted["compiled"]["naive"] / records["naive"]
    per_record = compiled / records["handler"]
    print(
        f"\ncompiled / source = {compiled / source:.3f}; "
        f"naive / handler (compiled) = {naive / per_record:,.0f}x the instructions a record"
    )
    return 0


def _per(counted: dict[str, int], phase: str, records: dict[str, int]) -> str:
    return f"{counted[phase] / records[phase]:,.0f}"


def _run_child(args: argparse.Namespace, environment: dict[str, str], *, naive: bool) -> dict[str, int]:
    """The child's counts under callgrind, in `environment` (the naive way's too when `naive`)."""
    with tempfile.TemporaryDirectory(prefix="fraudwatch-callgrind-") as scratch:
        out = Path(scratch) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.handler_instructions",
            "--child",
            *_forwarded(args),
            *(() if naive else ("--no-naive",)),
        ]
        child = subprocess.run(
            command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, check=False
        )
        if child.returncode != 0:
            raise SystemExit(f"the child failed:\n{child.stdout}\n{child.stderr[-3000:]}")
        print(child.stdout, end="")
        return _counts(Path(scratch), PHASES if naive else PHASES[:1])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=60, help="distinct card holders (default 60)")
    parser.add_argument("--batches", type=int, default=100, help="counted batches of 100 (default 100)")
    parser.add_argument(
        "--warmup-batches", type=int, default=30, help="untimed, to build profiles (default 30)"
    )
    parser.add_argument(
        "--naive-records", type=int, default=50, help="records the naive way scores (default 50)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-naive", action="store_true", help=argparse.SUPPRESS)
    return parser


def _forwarded(args: argparse.Namespace) -> list[str]:
    return [
        f"--users={args.users}",
        f"--batches={args.batches}",
        f"--warmup-batches={args.warmup_batches}",
        f"--naive-records={args.naive_records}",
    ]


def _child(args: argparse.Namespace) -> int:
    """Under callgrind: build the scene uncounted, then count the handler's batches, then the naive way."""
    from bench.handler_cpu import _time_handler, kinesis_event, load_app
    from bench.scoring_cpu import _service, _time_naive, scene
    from fraudwatch.domain.controls import Controls, FixedControls

    setup = scene(args)
    events = [kinesis_event(batch) for batch in setup.timed]
    naive_records = [record for batch in setup.timed for record in batch][: args.naive_records]
    app = load_app(setup.bundle)
    controls = FixedControls(Controls())
    gc.freeze()
    _time_handler(app, _service(setup.model, setup.history, controls), events[:3])  # warm, uncounted
    service = _service(setup.model, setup.history, controls)
    _callgrind("--instr=on")
    _time_handler(app, service, events)
    _callgrind("--dump=handler")
    if not args.no_naive:
        _time_naive(setup.model, setup.bundle, setup.history, naive_records, n_jobs=1)
        _callgrind("--dump=naive")
    _callgrind("--instr=off")
    print(f"model:   {setup.bundle.origin}; domain: {domain_build()}")
    return 0


def _callgrind(option: str) -> None:
    subprocess.run(["callgrind_control", option, str(os.getpid())], check=True, capture_output=True)


def _counts(scratch: Path, phases: Sequence[str]) -> dict[str, int]:
    """Instructions of each dump, by its reason (the phase named at `--dump`)."""
    counted: dict[str, int] = {}
    for dump in scratch.glob("callgrind.out*"):
        text = dump.read_text(errors="replace")
        reason = re.search(r"^desc: Trigger: Client Request: (\S+)|^desc: Trigger: (.+)$", text, re.M)
        summary = re.search(r"^summary: (\d+)", text, re.M)
        if reason is None or summary is None:
            continue
        name = (reason.group(1) or reason.group(2)).strip()
        for phase in phases:
            if name.endswith(phase):
                counted[phase] = int(summary.group(1))
    missing = [phase for phase in phases if phase not in counted]
    if missing:
        raise SystemExit(f"no callgrind dump for {', '.join(missing)}: the bench is broken")
    return counted


if __name__ == "__main__":
    raise SystemExit(main())
