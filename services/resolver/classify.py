"""Understanding a Teams request: which front door, which action, which conversation.

Classification keys on the method and the path shape first and on the body second,
after the three chat-service front doors are normalised to one path grammar:

- legacy ``{region}.ng.msg.teams.microsoft.com/v1/…``
- ``teams.microsoft.com/api/chatsvc/{region}/v1/…``
- ``teams.cloud.microsoft/api/chatsvc/{region}/v1/…`` (and the consumer
  ``teams.live.com/api/chatsvc/consumer/v1/…``)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, unquote

from services.common.contracts import Action
from services.common.paths import remove_dot_segments
from services.resolver.body import BodyParse, parse_body

_CHATSVC_PREFIX = re.compile(r"^/api/chatsvc/[^/]+(?=/)", re.IGNORECASE)
_MT_PREFIX = re.compile(r"^/api/mt/(?:part/)?[^/]+(?=/)", re.IGNORECASE)
_CONVERSATION = r"(?P<conv>[^/]+)"
_MESSAGE = r"(?P<msg>[^/]+)"

_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("messages", re.compile(rf"^/v1/users/me/conversations/{_CONVERSATION}/messages/?$")),
    (
        "message_property",
        re.compile(
            rf"^/v1/users/me/conversations/{_CONVERSATION}/messages/{_MESSAGE}/properties/?$"
        ),
    ),
    ("message", re.compile(rf"^/v1/users/me/conversations/{_CONVERSATION}/messages/{_MESSAGE}/?$")),
    (
        "conversation_property",
        re.compile(rf"^/v1/users/me/conversations/{_CONVERSATION}/properties/?$"),
    ),
    ("threads", re.compile(r"^/v1/threads/?$")),
    ("thread_member", re.compile(rf"^/v1/threads/{_CONVERSATION}/members/(?P<member>[^/]+)/?$")),
    ("thread_property", re.compile(rf"^/v1/threads/{_CONVERSATION}/properties/?$")),
    ("thread", re.compile(rf"^/v1/threads/{_CONVERSATION}/?$")),
    ("conversation", re.compile(rf"^/v1/users/me/conversations/{_CONVERSATION}/?$")),
    ("external_search", re.compile(r"^/beta/users/(?P<email>[^/]+)/externalsearchv3/?$")),
    # Anything else about one conversation is ``other``, but still names it.
    ("conversation_any", re.compile(rf"^/v1/users/me/conversations/{_CONVERSATION}/.+$")),
    ("thread_any", re.compile(rf"^/v1/threads/{_CONVERSATION}/.+$")),
]


@dataclass(slots=True)
class ParsedRequest:
    """A request understood without any context lookup."""

    front_door: str
    action: Action
    path: str  # normalised, decoded, without the query
    conversation_id: str | None = None
    reply_to: str | None = None
    message_id: str | None = None
    targets: list[str] = field(default_factory=list)
    body: BodyParse = field(default_factory=BodyParse)


def front_door(host: str, path: str) -> str:
    """Name the front door a request came through."""
    host = host.lower().rstrip(".").split(":")[0]
    lowered = path.lower()
    if host.endswith(".mcas.ms"):
        host = host[: -len(".mcas.ms")]
    if host.endswith(".msg.teams.microsoft.com"):
        return "legacy"
    if lowered.startswith("/api/chatsvc/"):
        if host.endswith("teams.cloud.microsoft"):
            return "cloud"
        if host.endswith("teams.live.com"):
            return "consumer"
        return "afd"
    if lowered.startswith("/api/mt/"):
        return "middle_tier"
    if host.endswith("teams.live.com"):
        return "consumer"
    return "unknown"


def split_path(raw_path: str) -> tuple[str, dict[str, list[str]]]:
    """Decode a request path: strip the query, percent-decode (twice when a client
    double-encoded it), and collapse duplicate slashes."""
    path, _, query = raw_path.partition("?")
    decoded = unquote(path)
    if "%" in decoded:
        decoded = unquote(decoded)
    decoded = re.sub(r"/{2,}", "/", decoded)
    # As Teams resolves it: ``…/messages/1/../17`` is the edit of message 17.
    return remove_dot_segments(decoded), parse_qs(query, keep_blank_values=True)


def normalise(path: str) -> str:
    """Strip the chat-service or middle-tier prefix so all front doors share one grammar."""
    stripped = _CHATSVC_PREFIX.sub("", path, count=1)
    if stripped == path:
        stripped = _MT_PREFIX.sub("", path, count=1)
    return stripped


def _match(path: str) -> tuple[str, dict[str, str]] | None:
    lowered = path.lower()
    for name, pattern in _ROUTES:
        found = pattern.match(lowered)
        if found:
            # Take the groups from the original path so ids keep their case.
            spans = {key: found.span(key) for key in found.groupdict()}
            return name, {key: path[start:end] for key, (start, end) in spans.items()}
    return None


def _split_reply(conversation: str) -> tuple[str, str | None]:
    base, sep, rest = conversation.partition(";")
    if not sep:
        return conversation, None
    key, _, value = rest.partition("=")
    if key.strip().lower() == "messageid" and value:
        return base, value.strip()
    return base, None


@dataclass(frozen=True, slots=True)
class PathFacts:
    """What the host and path alone say about a request (no method, no body)."""

    front_door: str
    path: str  # normalised, decoded, without the query
    route: str | None = None
    groups: tuple[tuple[str, str], ...] = ()
    names: tuple[str, ...] = ()  # the query's ``name`` values, lower-case


# Longer paths and host names are read afresh each time rather than kept (a DNS name
# has at most 253 characters), so that the kept facts stay small whatever is sent.
_MEMO_PATH_CHARS = 2048
_MEMO_HOST_CHARS = 255


@lru_cache(maxsize=8192)
def _path_facts(host: str, raw_path: str) -> PathFacts:
    path, query = split_path(raw_path)
    normal = normalise(path)
    names = tuple(name.lower() for name in query.get("name", []))
    matched = _match(normal)
    if matched is None:
        return PathFacts(front_door(host, path), normal, names=names)
    route, groups = matched
    return PathFacts(front_door(host, path), normal, route, tuple(groups.items()), names)


def path_facts(host: str, raw_path: str) -> PathFacts:
    """The front door, normalised path, route and its ids of ``host`` and ``raw_path``.

    A pure function of the two, and the same few paths recur for every message of a
    conversation, so recent answers are kept (the warm path's profile showed path
    decoding and route matching at a third of classification)."""
    if len(raw_path) > _MEMO_PATH_CHARS or len(host) > _MEMO_HOST_CHARS:
        return _path_facts.__wrapped__(host, raw_path)
    return _path_facts(host, raw_path)


def classify(method: str, host: str, raw_path: str, body: bytes) -> ParsedRequest:
    """Classify one request. Never raises: what cannot be understood is ``other``."""
    method = method.upper()
    facts = path_facts(host, raw_path)
    parsed = ParsedRequest(front_door=facts.front_door, action=Action.OTHER, path=facts.path)
    if facts.route is None:
        return parsed
    groups = dict(facts.groups)
    if "conv" in groups:
        parsed.conversation_id, parsed.reply_to = _split_reply(groups["conv"])
    parsed.message_id = groups.get("msg")
    needs_body = method in {"POST", "PUT", "DELETE", "PATCH"}
    if needs_body:
        parsed.body = parse_body(body)
    parsed.action = _action(facts.route, method, facts.names, parsed, groups)
    if parsed.reply_to is not None:
        parsed.body.features.is_reply = True
    return parsed


def _action(
    route: str,
    method: str,
    names: tuple[str, ...],
    parsed: ParsedRequest,
    groups: dict[str, str],
) -> Action:
    data: Any = parsed.body.data
    if route == "messages" and method == "POST":
        message_type = (parsed.body.features.message_type or "").lower()
        if message_type == "control/typing" or message_type == "control/cleartyping":
            return Action.TYPING
        if message_type.startswith("control/"):
            return Action.CONTROL
        return Action.MESSAGE_SEND
    if route == "message_property" and "emotions" in names:
        if method == "PUT":
            return Action.REACTION_ADD
        if method == "DELETE":
            return Action.REACTION_REMOVE
        return Action.OTHER
    if route == "message":
        if method == "PUT":
            return Action.MESSAGE_EDIT
        if method == "DELETE":
            if isinstance(data, dict) and "deletetime" in data and data["deletetime"] is None:
                return Action.MESSAGE_UNDELETE
            return Action.MESSAGE_DELETE
        return Action.OTHER
    if route == "conversation_property" and method == "PUT" and "consumptionhorizon" in names:
        return Action.RECEIPT_READ
    if route == "threads" and method == "POST":
        if isinstance(data, dict) and isinstance(data.get("members"), list):
            parsed.targets = [
                str(member["id"])
                for member in data["members"]
                if isinstance(member, dict) and isinstance(member.get("id"), str)
            ]
        return Action.CHAT_CREATE
    if route == "thread_member":
        parsed.targets = [groups["member"]]
        if method == "PUT":
            return Action.MEMBER_ADD
        if method == "DELETE":
            return Action.MEMBER_REMOVE
        return Action.OTHER
    if route == "thread_property" and method == "PUT" and "topic" in names:
        return Action.CHAT_RENAME
    if route == "external_search" and method == "GET":
        parsed.targets = [groups["email"].lower()]
        return Action.USER_SEARCH_EXTERNAL
    return Action.OTHER
