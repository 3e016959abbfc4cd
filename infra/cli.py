"""The `fraudwatch` command line: one entry point, a subcommand per job.

Each module listed in COMMAND_MODULES owns its subcommands: it defines `register(subparsers)`, which
adds them with `set_defaults(run=...)`. Heavy imports happen inside the commands, so `--help` is fast.

Every command reports an error the same way, here: `fraudwatch <command>: error: <what>, <what to do>`
on stderr; exit status 2 for usage and input errors (argparse's own, UsageError, and a setting or model
bundle it was given that cannot be used: ConfigurationError), 1 for a failure at run time (any other
FraudwatchError, or an AWS call that failed). Output whose reader stopped reading (`| head`) ends the
command quietly, with a shell's status for it (141), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

COMMAND_MODULES = (
    "training.generate",
    "training.pipeline",
    "training.backtest.command",
    "infra.invoke",
    "infra.events",
    "infra.stack",
    "infra.demo",
    "infra.deploy",
    "infra.runner",
    "infra.producer",
    "infra.activity",
    "infra.redrive",
    "infra.alerts",
    "infra.controls",
    "infra.serve",
    "infra.cases",
    "infra.models",
)
USAGE_ERROR = 2
RUN_TIME_ERROR = 1
BROKEN_PIPE = 128 + 13  # as a shell reports a command that SIGPIPE ended


def writable_file(text: str) -> str:
    """An argparse type: a file a command writes once its work is done, checked before the work starts
    (not a directory; the nearest folder of it that exists is one the user may write in)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory, give a file")
    folder = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if (
        not folder.is_dir()
        or not os.access(folder, os.W_OK)
        or (path.exists() and not os.access(path, os.W_OK))
    ):
        raise argparse.ArgumentTypeError(f"cannot write {text}, check the path")
    return text


def at_least(low: int, most: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `low` (`at_least(1)`: a count), and at most `most`."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if most is not None and not low <= value <= most:
            raise argparse.ArgumentTypeError(f"must be from {low} to {most}, got {value}")
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return whole_number


def number_from(low: float, high: float | None = None, *, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number of at least `low` (more than `low` with `above`), and at most
    `high` (`number_from(0)`: days or seconds, none or more)."""

    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, got {text}")
        if value < low or (above and value == low):
            bound = "more than" if above else "at least"
            raise argparse.ArgumentTypeError(f"must be {bound} {low:g}, got {text}")
        return value

    return number


port_number = at_least(0, 65535)
"""An argparse type: a TCP port, 0 (any free one) to 65535."""


def instant(text: str) -> datetime:
    """An argparse type: an ISO 8601 date-time with its UTC offset (a naive one is no instant: its epoch
    would depend on the machine's time zone)."""
    form = "expected e.g. 2026-12-06T09:00:00Z"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r} ({form})") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"needs a UTC offset such as +00:00 or Z: {text!r} ({form})")
    return value


def build_parser(prog: str = "fraudwatch") -> argparse.ArgumentParser:
    """The parser with every subcommand registered by the module that owns it."""
    parser = argparse.ArgumentParser(prog=prog, description="Real-time card fraud scoring on AWS serverless.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the arguments; an unknown option is named before a missing command is."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = _subparsers(parser).get(args.command, parser)
        command.error(f"unrecognized arguments: {' '.join(unknown)} (see `{command.prog} --help`)")
    if args.command is None:
        parser.error("a command is required: see `fraudwatch --help` for the list")
    return args


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser, by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def main(argv: Sequence[str] | None = None, prog: str = "fraudwatch") -> int:
    """Run one subcommand; its return value is the exit status."""
    from botocore.exceptions import BotoCoreError, ClientError

    from fraudwatch.errors import ConfigurationError, FraudwatchError, UsageError

    args = parse(build_parser(prog), argv)
    try:
        status = int(args.run(args))
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not at the interpreter's exit
        return status
    except (UsageError, ConfigurationError) as exc:  # a setting or bundle the command was given
        return _error(args.command, str(exc), USAGE_ERROR)
    except FraudwatchError as exc:
        return _error(args.command, str(exc), RUN_TIME_ERROR)
    except (BotoCoreError, ClientError) as exc:
        hint = "is the stack up at its endpoint (`fraudwatch stack status`), and are credentials set?"
        return _error(args.command, f"an AWS call failed: {exc}; {hint}", RUN_TIME_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of the output stopped reading (`| head`): stop quietly
        _discard_stdout()
        return BROKEN_PIPE


def _discard_stdout() -> None:
    """Send what is left to write to /dev/null, so that the exit's flush raises nothing either."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _error(command: str, message: str, status: int) -> int:
    print(f"fraudwatch {command}: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
