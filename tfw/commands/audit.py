"""``tfw audit``: verify the hash chains, manage API keys, export, print the schema.

Reads the same settings as the audit service (``TFW_MONGODB_URI``, ``TFW_DATABASE``,
``TFW_CONFIG``). Key management and purges are written to the admin log.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pymongo import AsyncMongoClient

from services.audit.api import CSV_COLUMNS, csv_row
from services.audit.archive import Archive, RecordFilter
from services.audit.archive import parse_time as time_of
from services.audit.keys import SCOPES, ApiKeys
from services.audit.schema import schema_json, schema_markdown
from services.audit.settings import AuditSettings
from services.audit.stream import ensure_decision_stream
from services.common.bus import connect
from services.common.contracts import Subjects
from services.common.settings import SettingsError

Handler = Callable[[argparse.Namespace, Archive, ApiKeys], Awaitable[int]]


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("audit", help="the decision archive: verify, keys, export")
    actions = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    verify = actions.add_parser("verify", help="recompute the hash chains; exit 1 if broken")
    verify.add_argument("--since", help="start at this time (Unix seconds or ISO 8601)")
    verify.set_defaults(handler=_runner(_verify))

    keys = actions.add_parser("keys", help="API keys of the query API")
    key_actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_actions.add_parser("create", help="make a key (its secret is shown once)")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--scope", choices=SCOPES, default="read")
    create.set_defaults(handler=_runner(_keys_create))
    listing = key_actions.add_parser("list", help="list keys (never their secrets)")
    listing.set_defaults(handler=_runner(_keys_list))
    revoke = key_actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_runner(_keys_revoke))

    export = actions.add_parser("export", help="write records as JSON lines or CSV")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--since")
    export.add_argument("--until")
    export.add_argument("--actor")
    export.add_argument("--conversation")
    export.add_argument("--action")
    export.add_argument("--verdict", choices=("allow", "block"))
    export.add_argument("--rule")
    export.set_defaults(handler=_runner(_export))

    purge = actions.add_parser("purge", help="remove records older than a time")
    purge.add_argument("--before", required=True, help="Unix seconds or ISO 8601")
    purge.set_defaults(handler=_runner(_purge))

    consumer = actions.add_parser(
        "consumer", help="create the durable consumer a SIEM shipper (e.g. Vector) reads"
    )
    consumer.add_argument("name", help="durable consumer name, e.g. vector")
    consumer.add_argument("--ack-wait", type=float, default=60.0, help="seconds")
    consumer.set_defaults(handler=_consumer)

    schema = actions.add_parser("schema", help="print the decision record's JSON Schema")
    schema.add_argument("--markdown", action="store_true", help="the field-by-field document")
    schema.set_defaults(handler=_schema)


def parse_time(value: str | None, name: str = "time") -> float | None:
    """Unix seconds or ISO 8601 (UTC when no offset is given); a bad value stops the
    command with exit code 2 and says why."""
    if not value:
        return None
    try:
        return time_of(value)
    except ValueError as exc:
        raise SystemExit(f"tfw audit: {name} {value!r}: {exc}") from None


def _runner(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            settings = AuditSettings.load()
        except SettingsError as exc:
            print(f"tfw audit: {exc}", file=sys.stderr)
            return 2
        return asyncio.run(_with_archive(settings, handler, args))

    return run


async def _with_archive(settings: AuditSettings, handler: Handler, args: argparse.Namespace) -> int:
    timeout_ms = int(settings.mongo_timeout_s * 1000)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_uri, serverSelectionTimeoutMS=timeout_ms, socketTimeoutMS=timeout_ms
    )
    try:
        archive = Archive(client, settings.database, settings.chain_partition)
        return await handler(args, archive, ApiKeys(client, settings.database))
    finally:
        await client.close()


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


async def _verify(args: argparse.Namespace, archive: Archive, _: ApiKeys) -> int:
    reports = await archive.verify(parse_time(args.since, "--since"))
    if not reports:
        print("no chains: the archive is empty")
    for report in reports:
        print(report.describe())
    await archive.log_admin(
        _who(), "verify", {"since": args.since, "ok": all(r.ok for r in reports)}
    )
    return 0 if all(report.ok for report in reports) else 1


async def _keys_create(args: argparse.Namespace, archive: Archive, keys: ApiKeys) -> int:
    key, secret = await keys.create(args.name, args.scope)
    await archive.log_admin(
        _who(), "key.create", {"key_id": key.key_id, "name": key.name, "scope": key.scope}
    )
    print(f"key {key.key_id} ({key.scope}) for {key.name}; store this secret now, it is not kept:")
    print(secret)
    return 0


async def _keys_list(args: argparse.Namespace, archive: Archive, keys: ApiKeys) -> int:
    for key in await keys.list():
        created = datetime.fromtimestamp(key.created_at, UTC).isoformat(timespec="seconds")
        state = "active" if key.active else "revoked"
        print(f"{key.key_id}  {key.scope:<5}  {state:<7}  {created}  {key.name}")
    return 0


async def _keys_revoke(args: argparse.Namespace, archive: Archive, keys: ApiKeys) -> int:
    if not await keys.revoke(args.key_id):
        print(f"no active key {args.key_id}", file=sys.stderr)
        return 1
    await archive.log_admin(_who(), "key.revoke", {"key_id": args.key_id})
    print(f"revoked {args.key_id}")
    return 0


async def _export(args: argparse.Namespace, archive: Archive, _: ApiKeys) -> int:
    selection = RecordFilter(
        since=parse_time(args.since, "--since"),
        until=parse_time(args.until, "--until"),
        actor=args.actor,
        conversation=args.conversation,
        action=args.action,
        decision=args.verdict,
        rule=args.rule,
    )
    out = sys.stdout
    if args.format == "csv":
        import csv

        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        async for record in archive.stream(selection):
            writer.writerow(csv_row(record))
    else:
        async for record in archive.stream(selection):
            out.write(orjson.dumps(record).decode() + "\n")
    out.flush()
    return 0


async def _purge(args: argparse.Namespace, archive: Archive, _: ApiKeys) -> int:
    before = parse_time(args.before, "--before")
    assert before is not None
    removed = await archive.purge(before)
    await archive.log_admin(_who(), "purge", {"before": before, "removed": removed})
    print(f"removed {removed} records older than {args.before}")
    return 0


def _consumer(args: argparse.Namespace) -> int:
    try:
        settings = AuditSettings.load()
    except SettingsError as exc:
        print(f"tfw audit: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_create_consumer(settings, args.name, args.ack_wait))


async def _create_consumer(settings: AuditSettings, name: str, ack_wait: float) -> int:
    """Create (or show) a durable pull consumer with explicit acks on the stream, so a
    shipper that stops resumes where it was and nothing it has not acked is lost."""
    subjects = Subjects(settings.subject_prefix)
    nc = await connect(settings, f"tfw-audit-cli-{name}")
    try:
        js = nc.jetstream()
        await ensure_decision_stream(js, subjects, settings)
        info = await js.add_consumer(
            subjects.decision_stream,
            ConsumerConfig(
                durable_name=name,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=ack_wait,
                filter_subject=subjects.decisions_all,
            ),
        )
    finally:
        await nc.close()
    print(
        f"durable consumer {info.name} on stream {info.stream_name} "
        f"({info.num_pending} records waiting)"
    )
    return 0


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_markdown() if args.markdown else schema_json())
    return 0
