"""The ``lotex`` command. Each package adds its subcommands with a
``register(subparsers)`` function in its own ``cli`` module; this module
only collects them."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute subcommands; each has register(subparsers).
COMMAND_MODULES = (
    "gateway.demo_cli",
    "recorder.cli",
    "gateway.serve_cli",
    "replay.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lotex",
        description="lotex: an exchange engine for patents and technology licences.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as missing:
            if missing.name == name:
                continue  # that part of lotex is not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0 if args.command is None else 2
    result = args.run(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
