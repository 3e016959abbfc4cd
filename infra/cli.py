"""The `fraudwatch` command line: one entry point, a subcommand per job.

Each module listed in COMMAND_MODULES owns its subcommands: it defines `register(subparsers)`, which
adds them with `set_defaults(run=...)`. Heavy imports happen inside the commands, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "training.generate",
    "training.pipeline",
    "training.backtest",
    "infra.invoke",
    "infra.events",
    "infra.stack",
    "infra.deploy",
    "infra.runner",
    "infra.producer",
    "infra.redrive",
    "infra.serve",
)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand registered by the module that owns it."""
    parser = argparse.ArgumentParser(
        prog="fraudwatch", description="Real-time card fraud scoring on AWS serverless."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; its return value is the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
