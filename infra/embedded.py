"""What the embedded stack's commands share (`stack up` and `demo`): the model bundle they need, the
real handler run behind the local event-source runner on a thread, and their error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraudwatch.adapters.bundle import MODEL_FILE
from fraudwatch.errors import FraudwatchError, StaleBundleError, UsageError
from infra.emulator import client, emulator_environment
from infra.invoke import DEFAULT_BUNDLE, load_handler
from infra.runner import EventSourceRunner, MappingSettings
from infra.state import STATE_DIR
from infra.template import REPO_ROOT

Handler = Callable[[dict[str, Any], Any], Any]
# Builds the handler the runner invokes, from the stack's outputs, the endpoint and the model bundle.
HandlerFactory = Callable[[Mapping[str, str], str, Path], Handler]

HANDLER_LOG = STATE_DIR / "handler.log"
BUNDLE_DIR = DEFAULT_BUNDLE
DEFAULT_STACK = "fraudwatch"


class StackError(FraudwatchError):
    """A step of the stack or the demo failed; the message names the step and the reason."""


def ensure_bundle(bundle_dir: Path = BUNDLE_DIR) -> None:
    """Train (`fraudwatch train`) when there is no model bundle, or one for other features; load it.

    Loading it here makes a corrupt bundle fail now, before the stack starts.
    """
    from fraudwatch.adapters.model import load_model

    if not (bundle_dir / MODEL_FILE).is_file():
        _train(bundle_dir, f"no model bundle in {bundle_dir}")
    try:
        load_model(bundle_dir)
    except StaleBundleError:
        _train(bundle_dir, f"the model bundle in {bundle_dir} is for other features than this code's")
        load_model(bundle_dir)


def require_bundle(bundle_dir: Path) -> None:
    """Load the bundle the handler would score with, or UsageError naming its path and what to do."""
    from fraudwatch.adapters.model import load_model

    if not (bundle_dir / MODEL_FILE).is_file():
        raise UsageError(
            f"no model bundle at {bundle_dir} ({MODEL_FILE} missing): train one with "
            f"`fraudwatch train --bundle {bundle_dir}`, pass --bundle with a trained one, or --no-runner "
            "to deploy without the handler"
        )
    load_model(bundle_dir)  # a corrupt or stale bundle: BundleError, naming the file


def _train(bundle_dir: Path, why: str) -> None:
    print(f"{why}: training one first (fraudwatch train)", file=sys.stderr)
    result = subprocess.run(  # noqa: S603 - our own interpreter and command
        [sys.executable, "-m", "infra.cli", "train", "--bundle", str(bundle_dir)], cwd=REPO_ROOT, check=False
    )
    if result.returncode != 0 or not (bundle_dir / MODEL_FILE).is_file():
        raise StackError(f"training failed (exit {result.returncode}); run `fraudwatch train` to see why")


def use_emulator_credentials(endpoint_url: str) -> None:
    """Point this process's AWS SDK at the emulator: it talks to nothing else from here on."""
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.update(emulator_environment(endpoint_url))


@dataclass
class RunningHandler:
    """The real handler behind the local event-source runner, on a thread."""

    runner: Any
    stop: threading.Event
    thread: threading.Thread
    error: list[BaseException] = field(default_factory=list)
    cases: threading.Thread | None = None
    """The cases function behind its local SQS runner (review cases opened from the alerts), if started."""
    ops: threading.Thread | None = None
    """The model operations function on its schedules (drift, matured labels), if started."""

    def check(self) -> None:
        """Raise if the runner died."""
        if self.error:
            raise StackError(f"the event-source runner stopped: {self.error[0]}") from self.error[0]

    def close(self) -> None:
        """Finish the batch in flight and stop."""
        self.stop.set()
        self.thread.join(timeout=60)
        for thread in (self.cases, self.ops):
            if thread is not None:
                thread.join(timeout=60)


def real_handler(outputs: Mapping[str, str], endpoint_url: str, bundle_dir: Path) -> Handler:
    """The scoring function's handler, imported in this process with its environment (a cold start)."""
    return load_handler(
        outputs,
        bundle_dir=bundle_dir,
        endpoint_url=endpoint_url,
        # The demo's output is its report: the handler's logs and EMF metrics go to the handler log.
        overrides={"POWERTOOLS_LOG_LEVEL": "WARNING"},
    )


def start_handler(
    outputs: Mapping[str, str],
    endpoint_url: str,
    bundle_dir: Path = BUNDLE_DIR,
    handler_factory: HandlerFactory = real_handler,
    *,
    cases: bool = True,
    ops_every: float | None = None,
) -> RunningHandler:
    """Run a handler (by default the real one) behind the local event-source runner, on a thread; with
    `cases`, the cases function behind its queue's runner too (`start_cases`), and the model operations
    function on its schedules, or every `ops_every` seconds (`start_ops`)."""

    handler = handler_factory(outputs, endpoint_url, bundle_dir)
    runner = EventSourceRunner(
        stream_name=outputs["StreamName"],
        handler=handler,
        settings=MappingSettings.from_template(),
        kinesis=client("kinesis", endpoint_url),
        sqs=client("sqs", endpoint_url),
        on_failure_queue_url=outputs["OnFailureQueueUrl"],
        function_name=outputs.get("ScoringFunctionName", "ScoringFunction"),
    )
    stop = threading.Event()
    running = RunningHandler(runner, stop, threading.Thread())

    def run() -> None:
        try:
            runner.run(stop)
        except BaseException as exc:  # reported by RunningHandler.check on the main thread
            running.error.append(exc)

    running.thread = threading.Thread(target=run, name="event-source-runner", daemon=True)
    running.thread.start()
    if not runner.ready.wait(timeout=30) and not running.error:
        raise StackError("the event-source runner did not open the stream's shards within 30 s")
    running.check()
    if cases and "CasesQueueUrl" in outputs:
        running.cases = start_cases(outputs, endpoint_url, stop, running.error)
    if "ModelOpsFunctionName" in outputs:
        running.ops = start_ops(outputs, endpoint_url, bundle_dir, stop, ops_every)
    return running


def start_ops(
    outputs: Mapping[str, str],
    endpoint_url: str,
    bundle_dir: Path,
    stop: threading.Event,
    every: float | None = None,
    cache_dir: Path = STATE_DIR / "models",
) -> threading.Thread:
    """The real model operations function behind the local schedule runner, on a thread: moto runs no
    EventBridge schedule, so its jobs run as the template schedules them (or every `every` seconds).
    `cache_dir` is where it keeps the registry's bundles, by version."""
    from infra.schedule_runner import ScheduleRunner, schedules_of

    handler = load_handler(
        outputs,
        bundle_dir=bundle_dir,
        endpoint_url=endpoint_url,
        overrides={"POWERTOOLS_LOG_LEVEL": "WARNING", "MODEL_CACHE_DIR": str(cache_dir)},
        function="ModelOpsFunction",
    )
    runner = ScheduleRunner(
        handler,
        schedules_of("ModelOpsFunction"),
        outputs.get("ModelOpsFunctionName", "ModelOpsFunction"),
        every=every,
    )
    thread = threading.Thread(target=runner.run, args=(stop,), name="model-ops-schedules", daemon=True)
    thread.start()
    return thread


def start_cases(
    outputs: Mapping[str, str], endpoint_url: str, stop: threading.Event, errors: list[BaseException]
) -> threading.Thread:
    """The real cases function (review cases from the alerts) behind the local SQS runner, on a thread."""
    from infra.queue_runner import QueueRunner

    handler = load_handler(
        outputs,
        endpoint_url=endpoint_url,
        overrides={"POWERTOOLS_LOG_LEVEL": "WARNING"},
        function="CasesFunction",
    )
    runner = QueueRunner(
        client("sqs", endpoint_url),
        outputs["CasesQueueUrl"],
        handler,
        outputs.get("CasesFunctionName", "CasesFunction"),
    )

    def run() -> None:
        try:
            runner.run(stop)
        except BaseException as exc:  # reported by RunningHandler.check on the main thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="cases-queue-runner", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def handler_output(path: Path = HANDLER_LOG) -> Iterator[None]:
    """Send stdout (the handler's structured logs and EMF metrics) to a file while the stack runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as sink, contextlib.redirect_stdout(sink):
        yield


def guarded(command: Any) -> Any:
    """Run a command with the embedded stack's logging: every library's warnings, one line each."""

    def run(args: argparse.Namespace) -> int:
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
        return int(command(args))  # errors: infra.cli prints them, one line, and sets the exit status

    return run
