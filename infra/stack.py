"""Placeholder: this module's subcommands are being written."""

import argparse
from typing import Any


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    """Add this module's subcommands (none yet)."""
