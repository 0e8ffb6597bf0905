"""A decision record as one ArcSight Common Event Format (CEF) line.

Header: ``CEF:0|TeamsFirewall|TeamsFirewall|<version>|<action>|<name>|<severity>|``;
the extension uses standard keys where one fits and labelled custom strings for the
rest. The mapping is documented field by field in ``docs/siem.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

VENDOR = "TeamsFirewall"
PRODUCT = "TeamsFirewall"

try:
    VERSION = metadata.version("teamsfirewall")
except metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "0"

SEVERITY_BLOCK = 7
SEVERITY_WOULD_BLOCK = 5
SEVERITY_ALLOW = 1


def escape_header(value: str) -> str:
    """Escape a header field: backslash and pipe; line breaks become spaces."""
    value = value.replace("\\", "\\\\").replace("|", "\\|")
    return value.replace("\r", " ").replace("\n", " ")


def escape_extension(value: str) -> str:
    """Escape an extension value: backslash, equals sign and line breaks."""
    value = value.replace("\\", "\\\\").replace("=", "\\=")
    return value.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


def severity(record: Mapping[str, Any]) -> int:
    """7 for a block, 5 for an allow a monitor rule would have blocked, 1 otherwise."""
    if record.get("decision") == "block":
        return SEVERITY_BLOCK
    if record.get("would_block"):
        return SEVERITY_WOULD_BLOCK
    return SEVERITY_ALLOW


def extension_fields(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The extension as ordered (key, raw value) pairs; empty values are left out."""
    actor = record.get("actor") or {}
    conversation = record.get("conversation") or {}
    rules = record.get("rules") or []
    custom = [
        ("conversationId", conversation.get("id")),
        ("rules", ",".join(str(rule.get("name", "")) for rule in rules)),
        ("rulesetVersion", record.get("ruleset_version")),
        ("location", record.get("location")),
        ("conversationType", conversation.get("type")),
        ("recordHash", record.get("hash")),
    ]
    fields: list[tuple[str, Any]] = [
        ("rt", int(float(record.get("time", 0)) * 1000)),
        ("externalId", record.get("decision_id")),
        ("act", record.get("decision")),
        ("cat", record.get("action")),
        ("suser", actor.get("email") or actor.get("upn")),
        ("suid", actor.get("mri")),
        ("src", record.get("client_ip")),
        ("dhost", record.get("host")),
        ("requestMethod", record.get("method")),
        ("request", record.get("path")),
        ("deviceExternalId", record.get("interceptor")),
        ("reason", record.get("reason")),
        ("cn1Label", "participantCount"),
        ("cn1", record.get("participant_count", 0)),
        ("cn2Label", "externalParticipantCount"),
        ("cn2", len(record.get("external_participants") or [])),
    ]
    for number, (label, value) in enumerate(custom, start=1):
        if value not in (None, ""):
            fields += [(f"cs{number}Label", label), (f"cs{number}", value)]
    return [(key, str(value)) for key, value in fields if value not in (None, "")]


def render(record: Mapping[str, Any]) -> str:
    """The CEF line for one record (a record as JSON, e.g. ``model_dump(mode="json")``)."""
    verdict = str(record.get("decision", ""))
    action = str(record.get("action", "other"))
    header = [
        "CEF:0",
        escape_header(VENDOR),
        escape_header(PRODUCT),
        escape_header(VERSION),
        escape_header(action),
        escape_header(f"{action} {'blocked' if verdict == 'block' else 'allowed'}"),
        str(severity(record)),
    ]
    extension = " ".join(
        f"{key}={escape_extension(value)}" for key, value in extension_fields(record)
    )
    return "|".join(header) + "|" + extension
