"""From validated YAML values to compiled conditions: selectors, groups, walls, time
windows, content and attachment patterns. Every problem names the path it came from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.common.contracts import Action, ConversationType, Location
from services.decider.conditions import (
    DAYS,
    ActorIn,
    Condition,
    ConversationTypeIs,
    ExternalParticipants,
    FederatedIs,
    FilesMatch,
    LocationIs,
    ParticipantsMatch,
    Selector,
    TextMatches,
    TimeWindow,
    Wall,
    domain_patterns,
)
from services.decider.identity import IdentityPatterns, fold_text

Path_ = tuple[Any, ...]

# Walls guard what people say and who they bring in, unless a wall lists its own actions.
WALL_ACTIONS = frozenset(
    {
        Action.MESSAGE_SEND,
        Action.MESSAGE_EDIT,
        Action.MESSAGE_UNDELETE,
        Action.REACTION_ADD,
        Action.REACTION_REMOVE,
        Action.MEMBER_ADD,
        Action.CHAT_CREATE,
    }
)

# Inline global flags, "(?i)" or "(?aiLmsux)" at the start of a pattern (not "(?i:...)").
_GLOBAL_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")

# The order in which a rule's conditions run: cheapest and most selective first.
ORDER = (
    "location",
    "federated",
    "conversation_types",
    "actors",
    "not_actors",
    "time",
    "files",
    "external_participants",
    "text",
    "participants",
)


class CompileProblem(Exception):
    """One problem in a rule document, at a path inside it."""

    def __init__(self, path: Path_, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass
class Groups:
    """Named groups of people, domains and tenants, as written."""

    people: dict[str, list[str]] = field(default_factory=dict)
    domains: dict[str, list[str]] = field(default_factory=dict)
    tenants: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, raw: dict[str, Any] | None) -> Groups:
        groups = cls()
        for name, spec in (raw or {}).items():
            groups.people[name] = [str(v) for v in spec.get("people") or []]
            groups.domains[name] = [str(v) for v in spec.get("domains") or []]
            groups.tenants[name] = [str(v).strip().lower() for v in spec.get("tenants") or []]
        return groups

    def __contains__(self, name: object) -> bool:
        return name in self.people


def selector(items: list[str], groups: Groups, path: Path_) -> Selector:
    """Compile identity patterns, ``group:``, ``domain:`` and ``tenant:`` items."""
    people: list[str] = []
    domains: list[str] = []
    tenants: list[str] = []
    for index, item in enumerate(items):
        kind, _, value = item.partition(":")
        if kind == "group":
            if value not in groups:
                raise CompileProblem((*path, index), f"unknown group {value!r}")
            people += groups.people[value]
            domains += groups.domains[value]
            tenants += groups.tenants[value]
        elif kind == "domain":
            domains.append(value)
        elif kind == "tenant":
            tenants.append(value.strip().lower())
        else:
            people.append(item)
    return Selector(
        IdentityPatterns.compile(people),
        domain_patterns(domains),
        frozenset(tenants),
        tuple(items),
    )


def group_selector(name: str, groups: Groups, path: Path_) -> Selector:
    if name not in groups:
        raise CompileProblem(path, f"unknown group {name!r}")
    return selector([f"group:{name}"], groups, path)


def actions_of(raw: list[str] | None) -> frozenset[Action] | None:
    return frozenset(Action(a) for a in raw) if raw else None


def conditions(when: dict[str, Any], groups: Groups, path: Path_) -> list[Condition]:
    """The compiled conditions of a ``when`` block, except ``actions`` (indexed apart)."""
    built: list[Condition] = []
    for key in ORDER:
        if key not in when:
            continue
        value = when[key]
        here = (*path, key)
        if key == "location":
            built.append(LocationIs(Location(value)))
        elif key == "federated":
            built.append(FederatedIs(bool(value)))
        elif key == "conversation_types":
            built.append(ConversationTypeIs(frozenset(ConversationType(t) for t in value)))
        elif key in ("actors", "not_actors"):
            built.append(ActorIn(selector(value, groups, here), negate=key == "not_actors"))
        elif key == "participants":
            spec = {"any": value} if isinstance(value, list) else value
            for quantifier in ("any", "all", "none"):
                if quantifier in spec:
                    sel = selector(spec[quantifier], groups, (*here, quantifier))
                    built.append(ParticipantsMatch(quantifier, sel))
        elif key == "external_participants":
            built.append(ExternalParticipants(bool(value)))
        elif key == "time":
            built.append(time_window(value, here))
        elif key == "text":
            built.append(text_condition(value, here))
        elif key == "files":
            built.append(files_condition(value))
    return built


def wall_condition(raw: dict[str, Any], groups: Groups, path: Path_) -> Wall:
    if "between" in raw:
        left, right = raw["between"]
        a = group_selector(left, groups, (*path, "between", 0))
        b = group_selector(right, groups, (*path, "between", 1))
        return Wall(((left, a, right, b), (right, b, left, a)))
    src, dst = raw["from"], raw["to"]
    a = group_selector(src, groups, (*path, "from"))
    b = group_selector(dst, groups, (*path, "to"))
    return Wall(((src, a, dst, b),))


def _clock(text: str) -> clock:
    hours, minutes = (int(part) for part in text.split(":"))
    if hours == 24:
        return clock(23, 59, 59, 999999)
    return clock(hours, minutes)


def time_window(raw: dict[str, Any], path: Path_) -> TimeWindow:
    try:
        zone = ZoneInfo(raw["tz"])
    except (ZoneInfoNotFoundError, ValueError):
        raise CompileProblem((*path, "tz"), f"unknown time zone {raw['tz']!r}") from None
    if ("from" in raw) != ("to" in raw):
        raise CompileProblem(path, "a time window needs both 'from' and 'to'")
    days = frozenset(DAYS.index(d) for d in raw.get("days") or DAYS)
    start = _clock(raw["from"]) if "from" in raw else None
    end = _clock(raw["to"]) if "to" in raw else None
    return TimeWindow(zone, days, start, end)


def text_condition(raw: dict[str, Any], path: Path_) -> TextMatches:
    keywords = [fold_text(k).strip() for k in raw.get("keywords") or [] if k.strip()]
    keyword_re = None
    if keywords:
        words = "|".join(re.escape(k) for k in sorted(keywords, key=len, reverse=True))
        keyword_re = re.compile(rf"(?<!\w)(?:{words})(?!\w)")
    parts = []
    for index, pattern in enumerate(raw.get("regex") or []):
        here = (*path, "regex", index)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise CompileProblem(here, f"bad regular expression: {exc}") from None
        except RecursionError:
            raise CompileProblem(here, "bad regular expression: nested too deeply") from None
        if _GLOBAL_FLAGS.match(pattern):
            raise CompileProblem(
                here,
                "global flags such as (?i) are not allowed, since patterns are joined "
                "with the others of the rule; scope a flag to a group, as in (?s:a.b) "
                "(matching is already case-insensitive)",
            )
        parts.append(f"(?:{pattern})")
    try:
        regex = re.compile("|".join(parts), re.IGNORECASE) if parts else None
    except re.error as exc:
        raise CompileProblem((*path, "regex"), f"bad regular expression: {exc}") from None
    if keyword_re is None and regex is None:
        raise CompileProblem(path, "a text condition needs keywords or regex")
    source = tuple(raw.get("keywords") or []) + tuple(f"/{p}/" for p in raw.get("regex") or [])
    return TextMatches(keyword_re, regex, source, tuple(keywords))


def files_condition(raw: bool | dict[str, Any]) -> FilesMatch:
    if isinstance(raw, bool):
        return FilesMatch(raw, frozenset())
    extensions = frozenset(fold_text(e).lstrip(".") for e in raw["extensions"])
    return FilesMatch(True, extensions)
