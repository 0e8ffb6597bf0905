"""``tfw run SERVICE``: run one service in the foreground (as in a container)."""

from __future__ import annotations

import argparse
import os
import sys

from tfw.stack import SERVICES


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("run", help="run one service in the foreground")
    parser.add_argument("service", choices=SERVICES)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    argv = [sys.executable, "-m", f"services.{args.service}"]
    os.execv(sys.executable, argv)  # noqa: S606 (replaces this process)
    return 0  # not reached
