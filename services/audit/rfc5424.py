"""Decision records as RFC 5424 syslog messages, framed for TCP or TLS.

Framing is octet counting (``<length> <message>``, RFC 6587 section 3.4.1 and RFC
5425), which every SIEM receiver accepts and which survives line breaks in a message.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from services.audit import cef

FACILITY_LOCAL0 = 16
SEVERITY_WARNING = 4
SEVERITY_INFO = 6
# 32473 is the private enterprise number reserved for examples (RFC 5612).
SD_ID = "tfw@32473"
MSGID = "decision"


def sd_escape(value: str) -> str:
    """Escape an SD-PARAM value: backslash, double quote and closing bracket."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def header_token(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` long, or ``-``."""
    cleaned = "".join(ch for ch in value if "!" <= ch <= "~")[:limit]
    return cleaned or "-"


def timestamp(unix: float) -> str:
    """RFC 3339 in UTC with milliseconds, as RFC 5424 wants."""
    moment = datetime.fromtimestamp(unix, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def render(
    record: Mapping[str, Any],
    app_name: str = "teamsfirewall",
    body: str = "cef",
    hostname: str | None = None,
) -> str:
    """One RFC 5424 message (without framing) for a record given as JSON."""
    level = SEVERITY_WARNING if record.get("decision") == "block" else SEVERITY_INFO
    priority = FACILITY_LOCAL0 * 8 + level
    params = {
        "decision_id": record.get("decision_id"),
        "verdict": record.get("decision"),
        "action": record.get("action"),
        "ruleset": record.get("ruleset_version"),
    }
    structured = " ".join(
        f'{key}="{sd_escape(str(value))}"' for key, value in params.items() if value
    )
    message = (
        cef.render(record)
        if body == "cef"
        else orjson.dumps(dict(record), option=orjson.OPT_SORT_KEYS).decode()
    )
    return " ".join(
        [
            f"<{priority}>1",
            timestamp(float(record.get("time", 0.0))),
            header_token(hostname or socket.gethostname(), 255),
            header_token(app_name, 48),
            "-",
            MSGID,
            f"[{SD_ID} {structured}]",
            message,
        ]
    )


def frame(message: str) -> bytes:
    """Octet-counted framing: the byte length, a space, the message."""
    data = message.encode("utf-8")
    return str(len(data)).encode() + b" " + data
