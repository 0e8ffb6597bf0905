"""Which traffic the firewall controls, by host *family* and path *shape*.

Microsoft keeps moving Teams between hosts (the web client moved to
``teams.cloud.microsoft`` in 2024), so nothing here is a list of exact hosts:

- a host is *controlled* when it is a chat-service front door (legacy
  ``{region}.ng.msg.teams.microsoft.com``, ``teams.microsoft.com``,
  ``teams.cloud.microsoft``, the token exchange ``authsvc.…``, and the consumer hosts
  when configured), in any Defender for Cloud Apps ``….mcas.ms`` form. Its TLS is
  decrypted and its chat-service paths are decided;
- a host inside a Teams domain that is known to carry no chat-service traffic
  (push, presence, media, calling, CDNs, configuration) is *tunnelled* untouched;
- any other host inside a Teams domain is *unknown*: it is decrypted too, so a
  chat-service path on it is still decided, and it is logged and counted so the
  host list can follow Microsoft;
- every other host is *foreign*: tunnelled, or refused when the proxy only serves
  Teams.

The path grammar after the front-door prefix is the same on every front door, so
paths are normalised (``/api/chatsvc/{region}`` stripped) before they are matched.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote

from services.common.paths import remove_dot_segments


class HostKind(StrEnum):
    CHAT_SERVICE = "chat_service"  # legacy *.msg.teams.microsoft.com, msgapi.teams.live.com
    FRONT_DOOR = "front_door"  # teams.microsoft.com, teams.cloud.microsoft, teams.live.com
    TOKEN_EXCHANGE = "token_exchange"  # noqa: S105 (a host kind, not a secret): authsvc.teams.microsoft.com # nosec B105
    TEAMS_TUNNELLED = "teams_tunnelled"  # Teams hosts that carry no chat-service traffic
    TEAMS_UNKNOWN = "teams_unknown"
    FOREIGN = "foreign"


# Domains whose hosts belong to Teams. Anchored: a host is one of them or ends in
# "." + one of them, so teams.microsoft.com.evil.test is foreign.
TEAMS_DOMAINS = (
    "teams.microsoft.com",
    "teams.cloud.microsoft",
    "teams.live.com",
    "teams.microsoft.us",
    "teams.office.com",
    "skype.com",
    "teams.cdn.office.net",
    "teams.cdn.live.net",
)
_FRONT_DOORS = ("teams.microsoft.com", "teams.cloud.microsoft")

# Shell patterns (as in a PAC file) of the hosts the interceptor controls; the
# consumer ones apply only when consumer hosts are configured. `tfw pac` writes them.
CONTROLLED_HOST_PATTERNS = (
    "*.msg.teams.microsoft.com",
    "teams.microsoft.com",
    "teams.cloud.microsoft",
    "authsvc.teams.microsoft.com",
)
CONSUMER_HOST_PATTERNS = ("teams.live.com", "msgapi.teams.live.com")
_CONSUMER_FRONT_DOOR = "teams.live.com"
_CONSUMER_CHAT_SERVICE = "msgapi.teams.live.com"
_LEGACY_CHAT_SERVICE = re.compile(r"^(?:[a-z0-9-]+\.)+msg\.teams\.microsoft\.com$")
_TOKEN_EXCHANGE = re.compile(r"^authsvc\.teams\.(?:microsoft\.com|cloud\.microsoft)$")
# A label anywhere left of the Teams domain that says "no chat service here".
_TUNNELLED_LABEL = re.compile(
    r"(?:^|\.)(?:[a-z0-9-]*trouter[a-z0-9-]*|presence|[a-z0-9-]*asyncgw|[a-z0-9-]*-?api\.asm"
    r"|api\.flightproxy|flightproxy|config|statics|chatsvcagg|ups)\."
)
_TUNNELLED_DOMAINS = ("skype.com", "teams.cdn.office.net", "teams.cdn.live.net")
# Defender for Cloud Apps session control: host.mcas.ms, host.{region}.mcas.ms and
# the older host.{region}.cas.ms.
_MCAS_SUFFIX = re.compile(r"\.m?cas\.ms$")

# Everything under /api/chatsvc/{region}/ is the chat service, whatever its version.
_CHATSVC_PREFIX = re.compile(r"^/api/chatsvc/[^/]+(?=/|$)", re.IGNORECASE)
_CHATSVC_PATH = re.compile(r"^/v[0-9]+/(?:users/[^/]+/|threads(?:/|$))", re.IGNORECASE)
_MIDDLE_TIER = re.compile(r"^/api/mt/", re.IGNORECASE)
_EXTERNAL_SEARCH = re.compile(r"^/api/mt/.*/externalsearch", re.IGNORECASE)
_AUTHZ = re.compile(
    r"^(?:/api/authsvc)?/v1\.0/authz(?:/|$)|^/api/auth/v1\.0/authz/consumer", re.IGNORECASE
)
_PROFILE_LOOKUP = re.compile(
    r"^/api/mt/.*/users/(?:fetchShortProfile|fetchFederated|fetch)$"
    r"|^/api/mt/.*/externalsearch[a-z0-9]*$",
    re.IGNORECASE,
)
_THREAD_LOOKUP = re.compile(
    r"^/v1/threads/[^/]+/?(?:/members/?|/consumptionhorizons/?)?$"
    r"|^/v1/users/[^/]+/conversations/[^/]+/?$",
    re.IGNORECASE,
)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bare_host(host: str) -> str:
    """Lower-case host without port, brackets, trailing dot or Defender for Cloud Apps
    suffix: ``Teams.Microsoft.com.mcas.ms:443`` is ``teams.microsoft.com``."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.rstrip(".")
    suffix = _MCAS_SUFFIX.search(host)
    if suffix is None:
        return host
    inner = host[: suffix.start()]
    if not _in_domain(inner, TEAMS_DOMAINS) and "." in inner:
        inner = inner.rsplit(".", 1)[0]  # a region label: host.eu2.mcas.ms
    return inner


def _in_domain(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == domain or host.endswith("." + domain) for domain in domains)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# A pure function of two strings asked several times per request (the open-proxy
# guard, routing on the Host header and on the connection): parsing an IP address that
# is not one raises, which showed in the warm-path profile. Bounded, so a client
# naming endless hosts only evicts entries.
@functools.lru_cache(maxsize=4096)
def host_kind(host: str, consumer: bool = False) -> HostKind:
    """What a host is to the firewall; ``host`` may carry a port or an .mcas.ms suffix."""
    host = bare_host(host)
    if not host or _is_address(host) or not _in_domain(host, TEAMS_DOMAINS):
        return HostKind.FOREIGN
    if host in _FRONT_DOORS:
        return HostKind.FRONT_DOOR
    if _LEGACY_CHAT_SERVICE.match(host):
        return HostKind.CHAT_SERVICE
    if _TOKEN_EXCHANGE.match(host):
        return HostKind.TOKEN_EXCHANGE
    if host == _CONSUMER_FRONT_DOOR:
        return HostKind.FRONT_DOOR if consumer else HostKind.TEAMS_TUNNELLED
    if host == _CONSUMER_CHAT_SERVICE:
        return HostKind.CHAT_SERVICE if consumer else HostKind.TEAMS_TUNNELLED
    if _in_domain(host, _TUNNELLED_DOMAINS) or _TUNNELLED_LABEL.search(host):
        return HostKind.TEAMS_TUNNELLED
    if host.endswith(".teams.live.com") and not consumer:
        return HostKind.TEAMS_TUNNELLED
    return HostKind.TEAMS_UNKNOWN


def is_teams_host(host: str) -> bool:
    """True for any host in a Teams domain (the open-proxy guard serves only these)."""
    return host_kind(host, consumer=True) is not HostKind.FOREIGN


def should_decrypt(host: str, consumer: bool = False) -> bool:
    """True when the proxy must see inside this host's TLS: controlled and unknown
    Teams hosts. Everything else is tunnelled without interception."""
    return host_kind(host, consumer) not in (HostKind.TEAMS_TUNNELLED, HostKind.FOREIGN)


def chat_service_path(path: str) -> str:
    """The path as the chat service sees it: front-door prefix and query removed."""
    path = path.split("?", 1)[0]
    return _CHATSVC_PREFIX.sub("", path, count=1)


@dataclass(frozen=True, slots=True)
class Route:
    """What the interceptor does with one request, computed once from its headers."""

    kind: HostKind
    decide: bool = False  # ask for a verdict before anything goes upstream
    observe_token: bool = False  # publish the request's credentials
    observe_response: bool = False  # publish the response the client receives
    chat_service: bool = False  # a chat-service path (decided or a read let through)

    @property
    def unknown_host(self) -> bool:
        return self.kind is HostKind.TEAMS_UNKNOWN


PASS = Route(HostKind.FOREIGN)


def canonical_path(path: str) -> str:
    """The path (query kept) as a server resolves it: percent-decoded (twice, for a
    client that double-encoded it), duplicate slashes collapsed, ``.`` and ``..``
    segments removed."""
    path, mark, query = path.partition("?")
    decoded = unquote(unquote(path)) if "%" in path else path
    decoded = re.sub(r"/{2,}", "/", decoded)
    return remove_dot_segments(decoded) + mark + query


# Longer paths, hosts and methods are routed afresh each time rather than kept, so
# that the kept routes stay small whatever clients send (a message's path is about 150
# characters; mitmproxy accepts a method of any length).
_KEPT_PATH_CHARS = 1024
_KEPT_METHOD_CHARS = 16


def route(
    method: str, host: str, path: str, consumer: bool = False, decide_reads: bool = False
) -> Route:
    """Decide what to do with a request from its method, host and path alone.

    The path is routed as written and as a server would resolve it; the stricter
    answer wins, so ``/api/x/../chatsvc/…``, ``/api//chatsvc/…`` or an encoded
    ``%63hatsvc`` cannot slip a chat-service request past its decision.

    A pure function of its arguments, and every message of a conversation has the
    same ones, so recent answers are kept (routing was the largest piece of the
    interceptor's own work on a warm request).
    """
    if (
        len(path) > _KEPT_PATH_CHARS
        or len(host) > _KEPT_PATH_CHARS
        or len(method) > _KEPT_METHOD_CHARS
    ):
        return _routed.__wrapped__(method, host, path, consumer, decide_reads)
    return _routed(method, host, path, consumer, decide_reads)


@functools.lru_cache(maxsize=4096)
def _routed(method: str, host: str, path: str, consumer: bool, decide_reads: bool) -> Route:
    found = _route(method, host, path, consumer, decide_reads)
    if found.decide:
        return found
    canonical = canonical_path(path)
    if canonical == path:
        return found
    resolved = _route(method, host, canonical, consumer, decide_reads)
    return resolved if resolved.decide else found


def _route(method: str, host: str, path: str, consumer: bool, decide_reads: bool) -> Route:
    kind = host_kind(host, consumer)
    if kind in (HostKind.FOREIGN, HostKind.TEAMS_TUNNELLED):
        return Route(kind)
    method = method.upper()
    raw_path = path.split("?", 1)[0]
    if _AUTHZ.match(raw_path):
        return Route(kind, observe_token=True, observe_response=True)
    if _MIDDLE_TIER.match(raw_path):
        return Route(
            kind,
            decide=bool(_EXTERNAL_SEARCH.match(raw_path)),
            observe_token=True,
            observe_response=bool(_PROFILE_LOOKUP.match(raw_path)),
        )
    if kind is HostKind.TOKEN_EXCHANGE:
        return Route(kind)
    normalised = chat_service_path(path)
    if kind is not HostKind.CHAT_SERVICE and not (
        _CHATSVC_PREFIX.match(raw_path) or _CHATSVC_PATH.match(raw_path)
    ):
        # The web app, the CSA, calendars … on a front door or an unknown Teams
        # host: not the chat service, so they pass.
        return Route(kind)
    if method == "OPTIONS":
        return Route(kind, chat_service=True)  # CORS preflight: no credentials, no action
    read = method in _READ_METHODS
    return Route(
        kind,
        decide=decide_reads or not read,
        observe_response=read and bool(_THREAD_LOOKUP.match(normalised)),
        chat_service=True,
    )


def action_class(method: str, path: str, body: bytes = b"") -> str:
    """The action class a fail mode is chosen for, from method and path shape only.

    The interceptor does not parse Teams semantics. A typing indicator is the same
    POST as a message, so the body is searched for exactly one ``"messagetype"`` key
    whose value starts with ``Control/``; anything unusual counts as a message (the
    stricter class when typing is allowed to fail open).
    """
    method = method.upper()
    normalised = chat_service_path(path).lower()
    query = path.split("?", 1)[1].lower() if "?" in path else ""
    if _EXTERNAL_SEARCH.match(path):
        return "search"
    if method in _READ_METHODS:
        return "read"
    if "/threads" in normalised:
        if "/members" in normalised:
            return "membership"
        return "thread"
    if "/messages/" in normalised and normalised.rstrip("/").endswith("/properties"):
        return "reaction" if "emotions" in query else "message"
    if normalised.endswith("/properties") and "consumptionhorizon" in query:
        return "receipt"
    if "/rcmetadata/" in normalised:
        return "receipt"
    if normalised.rstrip("/").endswith("/messages") and method == "POST":
        return "typing" if _is_control_message(body) else "message"
    if "/messages/" in normalised:
        return "message"
    return "other"


_MESSAGETYPE_KEY = re.compile(rb'"messagetype"\s*:', re.IGNORECASE)
_CONTROL_MESSAGETYPE = re.compile(rb'"messagetype"\s*:\s*"Control/', re.IGNORECASE)
_CONTROL_SCAN_BYTES = 64 * 1024


def _is_control_message(body: bytes) -> bool:
    head = body[:_CONTROL_SCAN_BYTES]
    return (
        len(body) <= _CONTROL_SCAN_BYTES
        and len(_MESSAGETYPE_KEY.findall(head)) == 1
        and _CONTROL_MESSAGETYPE.search(head) is not None
    )
