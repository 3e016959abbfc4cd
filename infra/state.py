"""The running stack's recorded state (.fraudwatch/stack.json): written by `stack up`, read by the
commands that talk to it, with the options that point at it."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.template import REPO_ROOT

STATE_DIR = REPO_ROOT / ".fraudwatch"
STATE_FILE = STATE_DIR / "stack.json"
# Where `stack up` writes its state, whatever directory a command is run from.
DEFAULT_OUTPUTS = str(STATE_FILE)


def read_stack_outputs(path: Path) -> dict[str, str]:
    """The stack's outputs as `stack up --detach` wrote them ({} when there is no such file)."""
    if not path.is_file():
        return {}
    state = json.loads(path.read_text())
    outputs = state.get("outputs", state)
    return {str(k): str(v) for k, v in outputs.items() if isinstance(v, str)}


def require_stack_outputs(path: Path) -> dict[str, str]:
    """The stack's outputs, or UsageError saying how to get some."""
    from fraudwatch.errors import UsageError

    outputs = read_stack_outputs(path)
    if not outputs:
        raise UsageError(
            f"no stack outputs at {path}: start a stack with `fraudwatch stack up --detach`, "
            "or pass --outputs with the file `fraudwatch deploy --outputs-file` wrote"
        )
    return outputs


def stack_endpoint(path: Path) -> str | None:
    """The endpoint recorded beside the outputs, if any."""
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    endpoint = state.get("endpoint_url") or state.get("endpoint")
    return str(endpoint) if endpoint else None


def add_stack_options(parser: argparse.ArgumentParser) -> None:
    """--endpoint, --region and --outputs: where the stack is, for every command that talks to it."""
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("AWS_ENDPOINT_URL"),
        help="endpoint URL (default: $AWS_ENDPOINT_URL, else the one recorded with the outputs; none: AWS)",
    )
    parser.add_argument(
        "--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"), help="AWS region"
    )
    parser.add_argument(
        "--outputs",
        default=DEFAULT_OUTPUTS,
        help="the stack's outputs (default .fraudwatch/stack.json in the project, written by "
        "`fraudwatch stack up --detach`)",
    )


def write_state(
    endpoint_url: str, stack_name: str, outputs: Mapping[str, str], path: Path = STATE_FILE
) -> None:
    """Record the running stack for `stack status`, `stack down`, `fraudwatch invoke`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"pid": os.getpid(), "endpoint": endpoint_url, "stack_name": stack_name, "outputs": dict(outputs)}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2))
    temporary.replace(path)


def read_state(path: Path = STATE_FILE) -> dict[str, Any] | None:
    """The recorded stack, or None when none is recorded."""
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return state
