"""Running the real Lambda handler in this process, as Lambda would, against any endpoint.

The function's environment comes from template.yaml's own `Environment.Variables`, each `!Ref`
resolved through the stack's outputs: no second list of names to keep in step with the template.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.state import add_stack_options
from infra.template import TEMPLATE, load_template

REPO = Path(__file__).resolve().parent.parent
HANDLER_FILE = REPO / "functions" / "scoring" / "app.py"
DEFAULT_BUNDLE = REPO / "layers" / "model" / "bundle"
FUNCTION = "ScoringFunction"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class LocalContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    function_name: str = FUNCTION
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = ""  # default: the function's own, from its name
    aws_request_id: str = ""
    log_group_name: str = ""  # default: the function's own, from its name
    log_stream_name: str = "local"
    timeout_ms: int = 60_000

    def __post_init__(self) -> None:
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())
        arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        self.invoked_function_arn = self.invoked_function_arn or arn
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        """Lambda's remaining time; the local runner does not enforce one."""
        return self.timeout_ms


def function_environment(
    outputs: Mapping[str, str], template: Path = TEMPLATE, function: str = FUNCTION
) -> dict[str, str]:
    """A function's environment variables as the template states them, resolved against the outputs."""
    doc = load_template(template)
    refs = {_ref(out["Value"]): outputs[name] for name, out in doc["Outputs"].items() if name in outputs}
    defaults = {name: str(p.get("Default", "")) for name, p in doc.get("Parameters", {}).items()}
    global_function = doc.get("Globals", {}).get("Function", {})
    variables: dict[str, Any] = dict(global_function.get("Environment", {}).get("Variables", {}))
    variables.update(doc["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {}))
    env = {}
    for name, value in variables.items():
        ref = _ref(value)
        if ref is None:
            env[name] = str(value)
        elif ref in refs:
            env[name] = refs[ref]
        elif ref in defaults:
            env[name] = defaults[ref]
        else:
            raise KeyError(f"{name}: the stack's outputs do not resolve !Ref {ref}")
    return env


def load_handler(
    outputs: Mapping[str, str],
    *,
    bundle_dir: Path = DEFAULT_BUNDLE,
    endpoint_url: str | None = None,
    overrides: Mapping[str, str] | None = None,
    function: str = FUNCTION,
) -> Handler:
    """Set a function's environment in this process and import its real handler (a cold start).

    The handler is the template's own: the function's `CodeUri` and `Handler` (module.function).
    """
    env = function_environment(outputs, function=function)
    env["MODEL_DIR"] = str(bundle_dir)
    env.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    env.update(overrides or {})
    os.environ.update(env)
    handler_file, name = handler_location(function)
    spec = importlib.util.spec_from_file_location(f"{handler_file.stem}_{uuid.uuid4().hex}", handler_file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the handler from {handler_file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Handler = getattr(module, name)
    return handler


def handler_location(function: str = FUNCTION, template: Path = TEMPLATE) -> tuple[Path, str]:
    """The file and the name of a function's handler, from its CodeUri and Handler in the template."""
    props = load_template(template)["Resources"][function]["Properties"]
    module, _, name = props["Handler"].rpartition(".")
    return template.parent / props["CodeUri"] / f"{module.replace('.', '/')}.py", name


def _ref(value: Any) -> str | None:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return str(value["Ref"])
    return None


def read_event(path: Path) -> dict[str, Any]:
    """A Lambda-shaped event from a JSON file, or UsageError naming the file and what is wrong."""
    from fraudwatch.errors import UsageError

    try:
        event = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(
            f"cannot read the event file {path}: {exc.strerror or exc}; pass --event with a "
            "Lambda-shaped event such as events/mixed.json (`fraudwatch events` writes them)"
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not a JSON event: {exc}; pass a file like events/mixed.json") from exc
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise UsageError(f"{path} has no Records list: pass a Kinesis event like events/mixed.json")
    return event


def _invoke(args: argparse.Namespace) -> int:
    from fraudwatch.errors import UsageError
    from infra.emulator import emulator_environment
    from infra.state import require_stack_outputs, stack_endpoint

    event = read_event(Path(args.event))
    if args.live:
        outputs = require_stack_outputs(Path(args.outputs))
        endpoint = args.endpoint or stack_endpoint(Path(args.outputs))
        overrides = emulator_environment(endpoint, args.region) if endpoint else None
        try:
            handler = load_handler(
                outputs, bundle_dir=Path(args.bundle), endpoint_url=endpoint, overrides=overrides
            )
        except KeyError as exc:
            raise UsageError(f"{exc.args[0]}: is {args.outputs} this template's stack?") from exc
        print(
            f"fraudwatch invoke: --live: decisions, profiles, alerts and quarantine go to the stack at "
            f"{endpoint or 'AWS'} ({outputs.get('DecisionsTableName', '?')})",
            file=sys.stderr,
        )
        print(json.dumps(handler(event, LocalContext()), indent=2))
        return 0
    response, written = invoke_dry(event, Path(args.bundle))
    print(json.dumps(response, indent=2))
    print(
        f"fraudwatch invoke: dry run, nothing written to any stack; it would have written {written}",
        file=sys.stderr,
    )
    return 0


def invoke_dry(event: dict[str, Any], bundle_dir: Path) -> tuple[dict[str, Any], str]:
    """Run the real handler on `event` against a throwaway stack; its response, and what it wrote."""
    from infra.dry_run import build_stack, in_process_aws

    with in_process_aws():
        outputs = build_stack("dry-run")
        handler = load_handler(outputs, bundle_dir=bundle_dir)
        response = handler(event, LocalContext())
        written = _what_was_written(outputs)
    return response, written


def _what_was_written(outputs: dict[str, str]) -> str:
    import boto3

    dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")

    def items(table: str) -> int:
        return int(dynamodb.scan(TableName=outputs[table], Select="COUNT")["Count"])

    def messages(queue: str) -> int:
        attributes = sqs.get_queue_attributes(
            QueueUrl=outputs[queue], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    return (
        f"{items('DecisionsTableName')} decisions, {items('ProfilesTableName')} user profiles, "
        f"{items('MerchantProfilesTableName')} merchant profiles, {messages('AlertInboxUrl')} alerts, "
        f"{messages('QuarantineQueueUrl')} quarantined records"
    )


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `invoke`: the Docker-free `sam local invoke`."""
    parser = subparsers.add_parser(
        "invoke",
        help="run the scoring handler in process on a Lambda-shaped event",
        description="Run the real scoring handler in this process on an event file (no Docker) and print "
        "the handler's response. By default a dry run: the handler writes to a throwaway in-process copy "
        "of the template's resources, and what it would have written is summarised. With --live it "
        "writes to the deployed stack's resources (`fraudwatch stack up --detach`).",
    )
    parser.add_argument("--event", required=True, help="a Lambda-shaped Kinesis event file")
    parser.add_argument(
        "--live",
        action="store_true",
        help="write to the running stack (decisions, profiles, alerts); default: a dry run on a "
        "throwaway in-process copy of the stack, printing what would have been written",
    )
    add_stack_options(parser)
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="model bundle directory")
    parser.set_defaults(run=_invoke)
