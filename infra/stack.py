"""The embedded stack's lifecycle: `fraudwatch stack up/status/down`.

`fraudwatch stack up` starts the emulator, deploys template.yaml to it and (with a model bundle) runs
the real handler behind the local event-source runner, so the AWS CLI can put records and read
decisions through `AWS_ENDPOINT_URL`; `--detach` keeps it in the background until `stack down`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.cli import port_number
from infra.deploy import deploy
from infra.embedded import (
    BUNDLE_DIR,
    DEFAULT_STACK,
    HANDLER_LOG,
    StackError,
    guarded,
    handler_output,
    require_bundle,
    start_handler,
    use_emulator_credentials,
)
from infra.emulator import Emulator, emulator_environment, is_healthy
from infra.state import STATE_DIR, STATE_FILE, read_state, write_state
from infra.template import REPO_ROOT

LOG_FILE = STATE_DIR / "stack.log"
DETACH_TIMEOUT_S = 120.0


def print_endpoint(endpoint_url: str, outputs: Mapping[str, str]) -> None:
    """The endpoint, the environment to point the AWS CLI at it, and the stack's outputs."""
    env = " ".join(f"{k}={v}" for k, v in emulator_environment(endpoint_url).items() if k != "AWS_REGION")
    print(f"endpoint: {endpoint_url}")
    print(f"export {env}")
    width = max((len(key) for key in outputs), default=0)
    for key, value in outputs.items():
        print(f"  {key:{width}}  {value}")


def _ours(pid: int) -> bool:
    """True when the pid is alive and is a fraudwatch stack process (never signal anything else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid we recorded
    return b"stack" in cmdline and (b"fraudwatch" in cmdline or b"infra" in cmdline)


def stack_up(args: argparse.Namespace) -> int:
    """`stack up`: emulator + deploy (+ runner with the real handler), until Ctrl-C or `stack down`."""
    if args.runner:
        require_bundle(args.bundle)  # before anything starts: a stack that cannot decide is no stack
    # Before --detach too: a second background stack would take over the state file and leave the first
    # running where `stack down` can no longer find it.
    state = read_state()
    if state and _ours(int(state["pid"])):
        raise StackError(
            f"a stack already runs (pid {state['pid']}, {state['endpoint']}); `stack down` first"
        )
    if args.detach:
        return _detach(args)

    stop = threading.Event()
    # `stack down` (SIGTERM) ends the wait below, and the cleanup runs in order.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Emulator(in_process=True, port=args.port) as emulator:
        outputs = deploy(emulator.endpoint_url, stack_name=args.stack_name, progress=True)
        use_emulator_credentials(emulator.endpoint_url)
        running = (
            start_handler(outputs, emulator.endpoint_url, args.bundle, ops_every=args.ops_every)
            if args.runner
            else None
        )
        write_state(emulator.endpoint_url, args.stack_name, outputs)
        print_endpoint(emulator.endpoint_url, outputs)
        if running:
            print(f"the scoring handler runs behind the local event-source runner (its logs: {HANDLER_LOG})")
        print("ready; Ctrl-C or `fraudwatch stack down` stops it", flush=True)
        # From here Ctrl-C is a request to stop, like SIGTERM (even where a shell ignores SIGINT).
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        try:
            with handler_output() if running else contextlib.nullcontext():
                while not stop.wait(0.5):
                    if running:
                        running.check()
        finally:
            if running:
                running.close()
            with contextlib.suppress(OSError):
                if (read_state() or {}).get("pid") == os.getpid():
                    STATE_FILE.unlink()
    print("stopped")
    return 0


def _detach(args: argparse.Namespace) -> int:
    """Run `stack up` in the background and wait until it has written its state."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "infra.cli", "stack", "up", "--stack-name", args.stack_name]
    command += ["--port", str(args.port), "--bundle", str(args.bundle)]
    command += [] if args.runner else ["--no-runner"]
    command += [] if args.ops_every is None else ["--ops-every", str(args.ops_every)]
    with contextlib.suppress(OSError):
        STATE_FILE.unlink()
    with LOG_FILE.open("w") as log_file:
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and command
            command, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + DETACH_TIMEOUT_S
    while time.monotonic() < deadline:
        state = read_state()
        if state and state.get("pid") == child.pid:
            print_endpoint(state["endpoint"], state["outputs"])
            print(
                f"running in the background (pid {child.pid}, log {LOG_FILE}); "
                "`fraudwatch stack down` stops it"
            )
            return 0
        if child.poll() is not None:
            raise StackError(f"the background stack exited ({child.returncode}): {_tail(LOG_FILE)}")
        time.sleep(0.2)
    child.terminate()
    raise StackError(f"the background stack was not ready within {DETACH_TIMEOUT_S:.0f} s: {_tail(LOG_FILE)}")


def _tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text().strip().splitlines()[-lines:])
    return "(no log)"


def stack_status(args: argparse.Namespace) -> int:
    """`stack status`: is the recorded stack up, and where."""
    state = read_state()
    if state is None:
        print("no stack is running (none recorded in .fraudwatch/stack.json)")
        return 1
    alive, healthy = _ours(int(state["pid"])), is_healthy(state["endpoint"])
    if not (alive and healthy):
        print(
            f"the recorded stack is not running (pid {state['pid']} alive: {alive}, "
            f"endpoint answers: {healthy})"
        )
        return 1
    print(f"running: pid {state['pid']}, stack {state['stack_name']}")
    print_endpoint(state["endpoint"], state["outputs"])
    return 0


def stack_down(args: argparse.Namespace) -> int:
    """`stack down`: stop the background stack recorded in the state file."""
    state = read_state()
    if state is None:
        print("no stack is running")
        return 0
    pid = int(state["pid"])
    if not _ours(pid):
        with contextlib.suppress(OSError):
            STATE_FILE.unlink()
        print(f"the recorded stack (pid {pid}) was not running; its record is removed")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while _ours(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _ours(pid):
        raise StackError(f"pid {pid} did not stop within 20 s after SIGTERM")
    with contextlib.suppress(OSError):
        STATE_FILE.unlink()
    print(f"stopped (pid {pid})")
    return 0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `stack` (up/status/down)."""
    stack = subparsers.add_parser(
        "stack",
        help="the embedded stack: emulator + deploy + the handler behind the local runner",
        description="Run the embedded stack (moto on 127.0.0.1, template.yaml deployed to it, the real "
        "handler behind the local event-source runner) to poke at with the AWS CLI.",
    )
    actions = stack.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser(
        "up",
        help="start it (foreground; --detach for the background)",
        description="Start the embedded emulator, deploy template.yaml to it and run the scoring handler "
        "behind the local event-source runner; print the endpoint, the line that points the AWS CLI at "
        "it and the stack's outputs (recorded in .fraudwatch/stack.json for the other commands). In the "
        "foreground until Ctrl-C, or with --detach in the background until `fraudwatch stack down`.",
    )
    up.add_argument("--detach", action="store_true", help="run in the background; `stack down` stops it")
    up.add_argument("--stack-name", default=DEFAULT_STACK, help=f"stack name (default {DEFAULT_STACK})")
    up.add_argument("--port", type=port_number, default=0, help="emulator port (default: a free one)")
    up.add_argument(
        "--no-runner", dest="runner", action="store_false", help="deploy only; do not run the handler"
    )
    up.add_argument("--bundle", type=Path, default=BUNDLE_DIR, help="model bundle directory for the handler")
    up.add_argument(
        "--ops-every",
        type=float,
        metavar="SECONDS",
        help="run the model operations (drift, matured) every SECONDS; default: the template's schedules",
    )
    up.set_defaults(run=guarded(stack_up))
    status = actions.add_parser(
        "status",
        help="is the background stack up, and where",
        description="Say whether the recorded stack runs, and print its endpoint and outputs (exit 1 if "
        "none runs).",
    )
    status.set_defaults(run=guarded(stack_status))
    down = actions.add_parser(
        "down", help="stop the background stack", description="Stop the stack `stack up` recorded."
    )
    down.set_defaults(run=guarded(stack_down))
