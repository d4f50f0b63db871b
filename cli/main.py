"""``headwater``: the command line of the platform.

Each command lives in a small module that adds its parser with ``register(subparsers)``; the
parser's ``handler`` returns the exit code: 0 ok, 1 failure, 2 usage (argparse's own).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from headwater import __version__
from headwater.core.errors import HeadwaterError

# Modules that register commands, in the order they appear in ``--help``.
COMMAND_MODULES = (
    "headwater.cli.lifecycle",
    "headwater.cli.logs",
    "headwater.cli.records",
    "headwater.cli.models",
    "headwater.cli.dashboard",
    "headwater.cli.demo",
    "headwater.cli.train",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headwater",
        description="Headwater: an event-driven machine-learning platform on Kafka and ClickHouse.",
    )
    parser.add_argument("--version", action="version", version=f"headwater {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except HeadwaterError as error:
        print(f"headwater {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
