"""``tfw demo``: the firewall on realistic Teams traffic, in one command.

Starts the stack (NATS, SecantusDB, resolver, decider, audit, proxy) with a Teams
simulator behind it, loads an organisation, imports the rules (2021 XML or the
product's YAML), replays a scenario (JSON lines or a HAR capture) through the proxy,
and prints one row per request: who did what where, and what the firewall decided.
Defaults are the example organisation, rules and scenario shipped in
``tfw/demo_data``; ``--org``, ``--rules``, ``--scenario`` run your own.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import orjson

from tfw.sim.client import ReplayResult
from tfw.sim.demo_run import Outcome, RulesError, outcomes, prepare_rules, replay, start_services
from tfw.sim.org import Org, OrgError, load_org
from tfw.sim.scenario import ScenarioError, ScenarioRequest, load_scenario
from tfw.sim.teams import TeamsSimulator
from tfw.stack import Stack, StackError

DEMO_DATA = Path(__file__).resolve().parent.parent / "demo_data"
COLUMNS = ("request", "actor", "action", "conversation", "verdict", "rules")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo", help="replay realistic Teams traffic through the firewall and show each decision"
    )
    parser.add_argument("--org", default=str(DEMO_DATA / "org.yaml"),
                        help="organisation YAML served by the Teams simulator")
    parser.add_argument("--rules", default=str(DEMO_DATA / "rules.xml"),
                        help="rules: a 2021 TeamsFirewall XML file or the product's YAML")
    parser.add_argument("--scenario", default=str(DEMO_DATA / "scenario.jsonl"),
                        help="requests to replay: JSON lines, or a .har capture")
    parser.add_argument("--out", help="write one JSON line per request to this file")
    parser.add_argument("--data-dir", help="keep servers' data and logs here "
                        "(default: a temporary directory, removed afterwards)")
    parser.add_argument("--logs", action="store_true", help="show the services' log stream")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    try:
        org = load_org(args.org)
        requests = load_scenario(args.scenario)
    except (OrgError, ScenarioError) as exc:
        print(f"tfw demo: {exc}", file=sys.stderr)
        return 2
    temporary = args.data_dir is None
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="tfw-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, org, requests, data_dir)
    finally:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)


def _run(
    args: argparse.Namespace, org: Org, requests: list[ScenarioRequest], data_dir: Path
) -> int:
    try:
        rules = prepare_rules(Path(args.rules), data_dir / "rules")
    except RulesError as exc:
        print(f"tfw demo: {exc}", file=sys.stderr)
        return 2
    if rules.import_report:
        print(f"Imported {args.rules}:\n{rules.import_report}\n", file=sys.stderr)
    log_path = data_dir / "stack.log"
    with open(log_path, "a", encoding="utf-8") as log_file:
        log: IO[str] = sys.stderr if args.logs else log_file
        stack = Stack(data_dir, log=log)
        try:
            with TeamsSimulator(org) as simulator, stack:
                where = "below" if args.logs else (log_path if args.data_dir else "--logs")
                print(f"Starting the stack (services' logs: {where}) …", file=sys.stderr)
                stack.start_nats()
                mongodb_uri = stack.start_mongo()
                database = f"tfw_demo_{secrets.token_hex(3)}"
                start_services(stack, simulator.port, rules, {"TFW_DATABASE": database})
                print(f"Replaying {len(requests)} requests from {args.scenario} …",
                      file=sys.stderr)
                results = replay(org, requests, stack, simulator, _progress)
                found = outcomes(results, mongodb_uri, database)
        except StackError as exc:
            print(f"\ntfw demo: the stack failed: {exc}", file=sys.stderr)
            _show_log_tail(log_path, args.data_dir)
            return 1
    print(render_table(found))
    print(summary(found))
    if args.out:
        with open(args.out, "wb") as out:
            for outcome in found:
                out.write(orjson.dumps(outcome.line()) + b"\n")
        print(f"Wrote {len(found)} lines to {args.out}", file=sys.stderr)
    unarchived = [o.result.id for o in found if o.result.decision_id and o.record is None]
    if unarchived:
        print(f"tfw demo: no decision record was archived for {', '.join(unarchived)}",
              file=sys.stderr)
        _show_log_tail(log_path, args.data_dir)
        return 1
    return 0


def _show_log_tail(log_path: Path, kept: str | None, lines: int = 40) -> None:
    """The end of the services' log, since a temporary data directory is removed."""
    try:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return
    where = f"the full log is {log_path}" if kept else "rerun with --data-dir to keep it"
    print(f"--- last lines of the services' log ({where}) ---", file=sys.stderr)
    print("\n".join(tail), file=sys.stderr)


def _progress(done: int, total: int, result: ReplayResult) -> None:
    width = 30
    filled = width * done // total
    status = result.status if result.status is not None else "error"
    bar = "#" * filled + "." * (width - filled)
    end = "\n" if done == total or not sys.stderr.isatty() else ""
    print(f"\r  [{bar}] {done:>3}/{total}  {result.id:<12} {status!s:<6}", end=end,
          file=sys.stderr, flush=True)


def row(outcome: Outcome) -> tuple[str, ...]:
    """The table row for one request: id, actor, action, conversation type, verdict, rules."""
    result, record = outcome.result, outcome.record or {}
    actor = record.get("actor") or {}
    who = actor.get("email") or actor.get("upn") or actor.get("mri")
    if not record:
        who = result.account or "-"
    elif not who:  # the firewall could not tell who it was: say whose client sent it
        who = f"(unidentified, as {result.account})" if result.account else "(unidentified)"
    conversation = (record.get("conversation") or {}).get("type") or "-"
    if result.skipped or result.error:
        verdict = "skipped" if result.skipped else "error"
    elif record:
        verdict = str(record.get("decision"))
        if record.get("would_block"):
            verdict += " (monitor: would block)"
    elif result.decision_id:
        verdict = f"no record yet (status {result.status})"
    else:
        verdict = f"not decided (status {result.status})"  # e.g. sign-in lookups
    rules = ", ".join(rule["name"] for rule in record.get("rules") or []) or "-"
    reason = record.get("reason")
    if verdict.startswith("block") and reason and rules == "-":
        rules = f"({reason})"
    return (result.id, who, str(record.get("action") or "-"), conversation, verdict, rules)


def render_table(found: list[Outcome]) -> str:
    rows = [COLUMNS, *(row(outcome) for outcome in found)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    lines = []
    for index, cells in enumerate(rows):
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
        lines.append("  ".join([*padded, cells[-1]]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in [*widths, len(COLUMNS[-1])]))
    return "\n".join(lines)


def summary(found: list[Outcome]) -> str:
    counts: dict[str, int] = {}
    for outcome in found:
        decision: Any = (outcome.record or {}).get("decision") or "no record"
        counts[str(decision)] = counts.get(str(decision), 0) + 1
    parts = [f"{count} {name}" for name, count in sorted(counts.items())]
    return f"\n{len(found)} requests: " + ", ".join(parts)


