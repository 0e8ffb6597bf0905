"""``tfw rules``: import a 2021 XML file, validate, test, explain and push rule sets.

Everything but ``push`` works offline. ``push`` validates the whole file first and
stores nothing when it is invalid, so the running rules keep working.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from services.common.contracts import RuleSetDocument, Subjects, encode
from services.decider.explain import (
    EventSpecError,
    event_from_spec,
    explain,
    render_explanation,
    run_test,
)
from services.decider.legacy import ImportReport, LegacyError, import_xml
from services.decider.rules import RuleError, RuleSet, compile_rules
from services.decider.schema import write_schema

NATS_TIMEOUT_S = 5.0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("rules", help="work with rule sets (offline, and push)")
    sub = parser.add_subparsers(dest="rules_command", required=True, metavar="ACTION")

    p = sub.add_parser("import-xml", help="convert a 2021 TeamsFirewall XML configuration")
    p.add_argument("file", type=Path)
    p.add_argument("-o", "--output", type=Path, help="write the YAML here (default: stdout)")
    p.set_defaults(handler=import_command)

    p = sub.add_parser("validate", help="check a rule file; errors name line and column")
    p.add_argument("file", type=Path)
    p.set_defaults(handler=validate_command)

    p = sub.add_parser("test", help="run the rule unit tests written beside the rules")
    p.add_argument("file", type=Path)
    p.add_argument(
        "tests",
        type=Path,
        nargs="*",
        help="test files (default: the rule file's own 'tests:' and FILE.tests.yaml next to it)",
    )
    p.set_defaults(handler=test_command)

    p = sub.add_parser("explain", help="which rules match an event, and why not")
    p.add_argument("file", type=Path)
    p.add_argument("event", type=Path, help="an event as JSON (short form or EnrichedEvent)")
    p.set_defaults(handler=explain_command)

    p = sub.add_parser("push", help="validate a rule file and make it the active rule set")
    p.add_argument("file", type=Path)
    p.add_argument("--nats-url", default=os.environ.get("TFW_NATS_URL", "nats://127.0.0.1:4222"))
    p.add_argument("--prefix", default=os.environ.get("TFW_SUBJECT_PREFIX", "tfw"))
    p.add_argument(
        "--nats-user",
        default=os.environ.get("TFW_NATS_USER"),
        help="NATS user allowed to write the rules bucket; the password is read from "
        "TFW_NATS_PASSWORD only, never from the command line",
    )
    p.add_argument("--nats-creds", default=os.environ.get("TFW_NATS_CREDS"), help="a .creds file")
    p.add_argument(
        "--nats-tls-ca",
        default=os.environ.get("TFW_NATS_TLS_CA"),
        help="CA file that signed the NATS server's certificate (enables TLS)",
    )
    p.add_argument(
        "--accept-import-problems",
        action="store_true",
        help="push a 2021 XML file even when its import reported problems",
    )
    p.set_defaults(handler=push_command)

    p = sub.add_parser("schema", help="write the rule language's JSON Schema")
    p.add_argument("-o", "--output", type=Path, default=Path("docs/rules.schema.json"))
    p.set_defaults(handler=schema_command)


def schema_command(args: argparse.Namespace) -> int:
    write_schema(args.output)
    print(f"wrote {args.output}")
    return 0


def _is_xml(path: Path, text: str) -> bool:
    return path.suffix.lower() in (".xml", ".config") or text.lstrip().startswith("<")


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def load_source(path: Path) -> tuple[str, ImportReport | None]:
    """The YAML source of a rule file, converting a 2021 XML file on the way."""
    text = path.read_text(encoding="utf-8")
    if _is_xml(path, text):
        return import_xml(text, path.name)
    return text, None


def load_rules(path: Path) -> RuleSet | None:
    """Compile a rule file, printing every problem as ``file:line:column: message``."""
    try:
        source, _ = load_source(path)
        return compile_rules(source)
    except OSError as exc:
        _err(f"{path}: {exc.strerror}")
    except LegacyError as exc:
        _err(f"{path}: {exc}")
    except RuleError as exc:
        for problem in exc.problems:
            where = f"{problem.line}:{problem.column}:" if problem.line else ""
            at = f" {problem.path}:" if problem.path else ""
            _err(f"{path}:{where}{at} {problem.message}")
    return None


def import_command(args: argparse.Namespace) -> int:
    try:
        output, report = import_xml(args.file.read_text(encoding="utf-8"), args.file.name)
    except OSError as exc:
        _err(f"{args.file}: {exc.strerror}")
        return 2
    except LegacyError as exc:
        _err(f"{args.file}: {exc}")
        return 1
    if args.output:
        args.output.write_text(output, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(output)
    print(report.render(), file=sys.stderr if not args.output else sys.stdout)
    return 0


def validate_command(args: argparse.Namespace) -> int:
    rules = load_rules(args.file)
    if rules is None:
        return 1
    for warning in rules.warnings:
        _err(f"{args.file}: warning: {warning}")
    print(
        f"{args.file}: valid, version {rules.version}, {len(rules.rules)} rules, "
        f"{len(rules.exceptions)} exceptions, {len(rules.tests)} tests"
    )
    return 0


def _test_files(args: argparse.Namespace) -> list[Path]:
    if args.tests:
        return list(args.tests)
    beside = args.file.with_name(args.file.name.split(".")[0] + ".tests.yaml")
    return [beside] if beside.exists() else []


def test_command(args: argparse.Namespace) -> int:
    rules = load_rules(args.file)
    if rules is None:
        return 1
    tests: list[dict[str, Any]] = list(rules.tests)
    for path in _test_files(args):
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        items = loaded.get("tests") if isinstance(loaded, dict) else loaded
        if not isinstance(items, list):
            _err(f"{path}: expected a list of tests (or a mapping with 'tests:')")
            return 1
        tests += items
    if not tests:
        _err(f"{args.file}: no rule tests found")
        return 1
    failed = 0
    for test in tests:
        result = run_test(test, rules)
        print(f"{'ok  ' if result.passed else 'FAIL'} {result.name}")
        for failure in result.failures:
            print(f"       {failure}")
        failed += not result.passed
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


def explain_command(args: argparse.Namespace) -> int:
    rules = load_rules(args.file)
    if rules is None:
        return 1
    try:
        spec = yaml.safe_load(args.event.read_text(encoding="utf-8"))
        event = event_from_spec(spec if isinstance(spec, dict) else {}, rules)
    except (OSError, yaml.YAMLError, EventSpecError, ValueError) as exc:
        _err(f"{args.event}: {exc}")
        return 1
    verdict, reports = explain(event, rules)
    print(render_explanation(verdict, reports))
    return 0


def push_command(args: argparse.Namespace) -> int:
    try:
        source, report = load_source(args.file)
    except (OSError, LegacyError) as exc:
        _err(f"{args.file}: {exc}")
        return 1
    if report is not None and report.problems and not args.accept_import_problems:
        _err(report.render())
        _err(
            "refused: the import reported problems (see above); fix the file, or push the "
            "converted YAML, or pass --accept-import-problems"
        )
        return 1
    rules = load_rules(args.file)
    if rules is None:
        _err("refused: nothing was pushed; the active rule set is unchanged")
        return 1
    document = RuleSetDocument(
        version=rules.version,
        source=source,
        internal_tenants=list(rules.internal_tenants),
        pushed_at=time.time(),
        pushed_by=f"{getpass.getuser()}@{socket.gethostname()}",
    )
    try:
        revision = asyncio.run(
            store(args.nats_url, Subjects(args.prefix), encode(document), _credentials(args))
        )
    except TimeoutError:
        _err(
            f"push failed: no answer from {args.nats_url} within {NATS_TIMEOUT_S:.0f} s; "
            "the active rule set is unchanged"
        )
        return 1
    except Exception as exc:  # any failure to store is reported; nothing changed
        _err(f"push failed ({type(exc).__name__}: {exc}); the active rule set is unchanged")
        return 1
    print(f"pushed rule set {rules.version} ({len(rules.rules)} rules) as revision {revision}")
    return 0


def _credentials(args: argparse.Namespace) -> dict[str, Any]:
    """nats-py connect options for an authenticated or TLS connection."""
    options: dict[str, Any] = {}
    if args.nats_user:
        options["user"] = args.nats_user
        options["password"] = os.environ.get("TFW_NATS_PASSWORD", "")
    if args.nats_creds:
        options["user_credentials"] = args.nats_creds
    if args.nats_tls_ca:
        options["tls"] = ssl.create_default_context(cafile=args.nats_tls_ca)
    return options


async def store(
    nats_url: str, subjects: Subjects, value: bytes, credentials: dict[str, Any] | None = None
) -> int:
    """Put the document under the rules bucket's ``active`` key; returns the revision."""
    import nats
    import nats.js.errors

    async def quiet(_exc: Exception) -> None:
        pass  # the one failure that matters is reported by the caller

    # nats-py keeps retrying an initial connection it cannot make: bound it here.
    nc = await asyncio.wait_for(
        nats.connect(
            nats_url,
            connect_timeout=NATS_TIMEOUT_S,
            max_reconnect_attempts=0,
            allow_reconnect=False,
            error_cb=quiet,
            **(credentials or {}),
        ),
        NATS_TIMEOUT_S,
    )
    try:
        js = nc.jetstream(timeout=NATS_TIMEOUT_S)
        try:
            kv = await js.key_value(subjects.rules_bucket)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(bucket=subjects.rules_bucket, history=10)
        return int(await asyncio.wait_for(kv.put(subjects.rules_key, value), NATS_TIMEOUT_S))
    finally:
        await nc.close()
