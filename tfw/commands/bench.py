"""``tfw bench``: what the firewall costs, measured against the proxy it runs in.

Starts everything it measures on 127.0.0.1 (stock ``mitmdump``, the lean master, the
firewall stack with the Teams simulator and a fast upstream), prints every figure as
it is measured, and the targets at the end. Nothing is asserted: the machine is
shared and noisy, so figures are ratios of configurations measured in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import orjson

from tfw.stack import StackError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "bench", help="measure throughput, latency and CPU of the firewall against mitmdump"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="size",
                      help="one short round of each figure (about a minute)")
    size.add_argument("--tiny", action="store_const", const="tiny", dest="size",
                      help="a fraction of a second per figure: checks the harness only")
    parser.add_argument("--mix", choices=("allowed", "mixed"), default="allowed",
                        help="allowed: every send passes the demo rules (default); "
                        "mixed: one in five is blocked")
    parser.add_argument("--profile", action="store_true",
                        help="also sample the interceptor with py-spy on the warm path")
    parser.add_argument("--json", metavar="FILE", help="write the figures to this file")
    parser.add_argument("--data-dir", help="keep servers' data, logs and the profile here "
                        "(default: a temporary directory, removed afterwards)")
    parser.set_defaults(handler=handle, size="full")


def handle(args: argparse.Namespace) -> int:
    from services.common.ops import run_forever
    from tfw.bench.suite import run_suite

    temporary = args.data_dir is None
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="tfw-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "stack.log"
    try:
        with open(log_path, "a", encoding="utf-8") as log:
            # The load generator runs on the services' event loop (uvloop when
            # installed) so it takes less of the machine it measures.
            report = run_forever(
                run_suite(data_dir, sys.stdout, log, args.size, args.mix, args.profile)
            )
    except StackError as exc:
        print(f"tfw bench: the stack failed: {exc}", file=sys.stderr)
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
        print("\n".join(tail), file=sys.stderr)
        return 1
    finally:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)
    if args.json:
        Path(args.json).write_bytes(
            orjson.dumps(report.figures, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS,
                         default=str)
        )
        print(f"Wrote the figures to {args.json}", file=sys.stderr)
    # Targets are reported, never asserted; a figure that could not be measured or a
    # record missing from the trail is a failure of the run.
    return 1 if report.problems else 0
