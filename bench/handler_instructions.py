"""Instructions per record of the real handler at batch 100 (valgrind's callgrind), beside the naive way.

CPU time on these shared 2-core machines moves by a fifth from one run to the next, as much as most
changes to the scoring path. An instruction count does not: the same code on the same records counts
the same to within 0.2 %, whatever else the machine runs. So this bench runs bench/handler_cpu.py's
scene (the same records, warmed profiles, `lambda_handler` loaded as Lambda loads it, AWS on in-memory
stores) in a child process under `valgrind --tool=callgrind --instr-atstart=no`, and counts only the
timed batches (and then the naive way's records, per record as bench/scoring_cpu.py's naive scorer
does them), switched on and dumped with `callgrind_control` around each. Instructions are not time:
they leave out cache misses and the CPU's parallelism (386k instructions and 40.3 µs a record on one
quiet run: about 9,600 a µs here); they are for comparing two versions of the code.

Needs valgrind (Debian's `valgrind` package). Takes about a minute with the defaults.

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

from bench._common import REPO_ROOT, machine, table

PHASES = ("handler", "naive")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the child under callgrind and print instructions per record of each way."""
    args = _parser().parse_args(argv)
    if args.child:
        return _child(args)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(
                f"{tool} not found: install Debian's valgrind package (apt-get install valgrind)"
            )
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
        ]
        print(f"running the handler's scene under callgrind ({args.batches} batches of 100, about a minute)")
        child = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        if child.returncode != 0:
            raise SystemExit(f"the child failed:\n{child.stdout}\n{child.stderr[-3000:]}")
        counted = _counts(Path(scratch))
        print(child.stdout, end="")
    records = {"handler": args.batches * 100, "naive": args.naive_records}
    print("\nInstructions per record at batch 100 (callgrind; the timed part only)")
    print(f"machine: {machine()}\n")
    rows = [
        (phase, f"{records[phase]:,}", f"{counted[phase]:,}", f"{counted[phase] / records[phase]:,.0f}")
        for phase in PHASES
    ]
    print(table(("way", "records", "instructions", "per record"), rows))
    ratio = (counted["naive"] / records["naive"]) / (counted["handler"] / records["handler"])
    print(f"\nnaive / handler = {ratio:,.0f}x the instructions a record")
    return 0


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
    _time_naive(setup.model, setup.bundle, setup.history, naive_records, n_jobs=1)
    _callgrind("--dump=naive")
    _callgrind("--instr=off")
    print(f"model:   {setup.bundle.origin}")
    return 0


def _callgrind(option: str) -> None:
    subprocess.run(["callgrind_control", option, str(os.getpid())], check=True, capture_output=True)


def _counts(scratch: Path) -> dict[str, int]:
    """Instructions of each dump, by its reason (the phase named at `--dump`)."""
    counted: dict[str, int] = {}
    for dump in scratch.glob("callgrind.out*"):
        text = dump.read_text(errors="replace")
        reason = re.search(r"^desc: Trigger: Client Request: (\S+)|^desc: Trigger: (.+)$", text, re.M)
        summary = re.search(r"^summary: (\d+)", text, re.M)
        if reason is None or summary is None:
            continue
        name = (reason.group(1) or reason.group(2)).strip()
        for phase in PHASES:
            if name.endswith(phase):
                counted[phase] = int(summary.group(1))
    missing = [phase for phase in PHASES if phase not in counted]
    if missing:
        raise SystemExit(f"no callgrind dump for {', '.join(missing)}: the bench is broken")
    return counted


if __name__ == "__main__":
    raise SystemExit(main())
