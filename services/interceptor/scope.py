"""Which traffic the firewall controls: Teams chat-service requests, by host family and
path shape (never a list of exact hosts: Microsoft keeps moving them)."""

from __future__ import annotations

import re

_LEGACY_CHATSVC = re.compile(r"(^|\.)msg\.teams\.microsoft\.com$")
_TEAMS_WEB = re.compile(r"^teams\.(microsoft\.com|cloud\.microsoft|live\.com)$")
_CHATSVC_PATH = re.compile(r"^/api/chatsvc/[^/]+/v1/", re.IGNORECASE)


def bare_host(host: str) -> str:
    """Lower-case host without port, trailing dot or Defender for Cloud Apps suffix."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.rstrip(".")
    if host.endswith(".mcas.ms"):
        host = host[: -len(".mcas.ms")]
    return host


def is_controlled(host: str, path: str) -> bool:
    """True when a request is a chat-service request the firewall must decide."""
    host = bare_host(host)
    if _LEGACY_CHATSVC.search(host):
        return True
    if _TEAMS_WEB.match(host):
        return bool(_CHATSVC_PATH.match(path))
    return False
