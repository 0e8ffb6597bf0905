"""The ``tfw`` command line. Each command group lives in its own module under
``tfw.commands`` and registers itself with :func:`register`."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "tfw.commands.up",
    "tfw.commands.run",
    "tfw.commands.audit",
    "tfw.commands.demo",
    "tfw.commands.rules",
    "tfw.commands.pac",
    "tfw.commands.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfw", description="TeamsFirewall: an ethical firewall for Microsoft Teams"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
