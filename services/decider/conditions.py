"""Compiled conditions. Each answers True, False or None (the fact is unknown) for
one event, and can say why in words for ``tfw rules explain``.

The hot path calls a condition; only ``explain`` builds sentences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time as clock
from zoneinfo import ZoneInfo

from services.common.contracts import Action, ConversationType, Location
from services.decider.facts import Crowd, Facts, Principal
from services.decider.identity import WORD, IdentityPatterns, fold_text, nfkc_text, normal_domain
from services.decider.screen import Screen

Outcome = bool | None


@dataclass(frozen=True, slots=True, eq=False)
class Selector:
    """People, domains and tenants compiled from identity patterns and named groups.

    Compared by identity: a selector is a key of each crowd's memo.
    """

    people: IdentityPatterns
    domains: IdentityPatterns
    tenants: frozenset[str]
    source: tuple[str, ...]

    def matches(self, who: Principal) -> bool:
        people = self.people
        if people.exact and not people.exact.isdisjoint(who.ids):
            return True
        if people.wildcard is not None:
            for identity in who.ids:
                if people.wildcard.match(identity):
                    return True
        if self.domains and self.domains.matches_any(who.domains):
            return True
        return who.tenant is not None and who.tenant in self.tenants

    def matches_some(self, crowd: Crowd) -> bool:
        """Does anyone in the crowd match? Asked once per crowd (see :class:`Crowd`)."""
        key = (self, "some")
        found = crowd.seen.get(key)
        if found is None:
            found = crowd.seen[key] = self._matches_some(crowd)
        return found

    def matches_all(self, crowd: Crowd) -> bool:
        """Does everyone in the crowd match (and is there anyone)?"""
        key = (self, "all")
        found = crowd.seen.get(key)
        if found is None:
            people = crowd.people
            found = crowd.seen[key] = bool(people) and all(map(self.matches, people))
        return found

    def _matches_some(self, crowd: Crowd) -> bool:
        """One set test and one regex per kind over the whole crowd."""
        if crowd.ids and self.people.matches_any(crowd.ids, crowd.ids_blob):
            return True
        if crowd.domains and self.domains.matches_any(crowd.domains, crowd.domains_blob):
            return True
        return bool(self.tenants) and not self.tenants.isdisjoint(crowd.tenants)

    def describe(self) -> str:
        return ", ".join(self.source)


def domain_patterns(domains: list[str]) -> IdentityPatterns:
    """Domain patterns (``firm.example``, ``*.firm.example``) in normal form."""
    return IdentityPatterns.compile([normal_domain(d) for d in domains], normalise=False)


def unknown_facts(conditions: tuple[Condition, ...], facts: Facts) -> tuple[str, ...] | None:
    """Test conditions in order: None as soon as one fails, else the facts that were
    unknown on the way (empty when every condition held)."""
    unknown: list[str] | None = None
    for condition in conditions:
        outcome = condition(facts)
        if outcome is False:
            return None
        if outcome is None:
            if unknown is None:
                unknown = []
            unknown.append(condition.unknown_fact(facts))
    return () if unknown is None else tuple(unknown)


class Condition:
    """Base of compiled conditions; ``fact`` names what an unknown answer lacks."""

    fact = ""
    key = ""
    # A static condition reads only the action, conversation type, location and
    # federated flag, so its answer is planned once per combination of those.
    static = False
    # An actor condition reads only the actor (and whether it is identified), so its
    # answer is planned once per actor.
    actor_only = False

    def for_actor(self, facts: Facts) -> Outcome | Condition:
        """This condition's answer for the event's actor alone, or what remains of it."""
        return self(facts)

    def unknown_fact(self, facts: Facts) -> str:
        """What was unknown when this condition answered None."""
        return self.fact

    def __call__(self, facts: Facts) -> Outcome:
        raise NotImplementedError

    def explain(self, facts: Facts) -> str:
        raise NotImplementedError


class ActionIs(Condition):
    key = "actions"

    def __init__(self, actions: frozenset[Action]) -> None:
        self.actions = actions

    def __call__(self, facts: Facts) -> Outcome:
        return facts.event.action in self.actions

    def explain(self, facts: Facts) -> str:
        wanted = ", ".join(sorted(a.value for a in self.actions))
        return f"action is {facts.event.action.value}; the rule wants {wanted}"


class ConversationTypeIs(Condition):
    static = True
    key = "conversation_types"
    fact = "conversation type"

    def __init__(self, types: frozenset[ConversationType]) -> None:
        self.types = types

    def __call__(self, facts: Facts) -> Outcome:
        conversation = facts.event.conversation
        if conversation is None:
            return False
        if conversation.type in self.types:
            return True
        return None if conversation.type is ConversationType.UNKNOWN else False

    def explain(self, facts: Facts) -> str:
        conversation = facts.event.conversation
        actual = "no conversation" if conversation is None else conversation.type.value
        wanted = ", ".join(sorted(t.value for t in self.types))
        return f"conversation type is {actual}; the rule wants {wanted}"


class LocationIs(Condition):
    static = True
    key = "location"
    fact = "location"

    def __init__(self, location: Location) -> None:
        self.location = location

    def __call__(self, facts: Facts) -> Outcome:
        actual = facts.event.location
        if actual is self.location:
            return True
        return None if actual is Location.UNKNOWN else False

    def explain(self, facts: Facts) -> str:
        return f"location is {facts.event.location.value}; the rule wants {self.location.value}"


class FederatedIs(Condition):
    static = True
    key = "federated"
    fact = "federated"

    def __init__(self, federated: bool) -> None:
        self.federated = federated

    def __call__(self, facts: Facts) -> Outcome:
        actual = facts.event.federated
        return None if actual is None else actual is self.federated

    def explain(self, facts: Facts) -> str:
        actual = facts.event.federated
        shown = "unknown" if actual is None else str(actual).lower()
        return f"federated is {shown}; the rule wants {str(self.federated).lower()}"


class ActorIn(Condition):
    key = "actors"
    fact = "actor"
    actor_only = True

    def __init__(self, selector: Selector, negate: bool = False) -> None:
        self.selector = selector
        self.negate = negate

    def __call__(self, facts: Facts) -> Outcome:
        if not facts.actor_known:
            return None
        return self.selector.matches(facts.actor) is not self.negate

    def explain(self, facts: Facts) -> str:
        if not facts.actor_known:
            return "the actor is not identified"
        verb = "must not match" if self.negate else "must match"
        return f"actor {facts.actor.label} {verb} {self.selector.describe()}"


class ParticipantsMatch(Condition):
    """``any``, ``all`` or ``none`` of the participants match a selector."""

    key = "participants"
    fact = "participants"

    def __init__(self, quantifier: str, selector: Selector) -> None:
        self.quantifier = quantifier
        self.selector = selector

    def __call__(self, facts: Facts) -> Outcome:
        if self.quantifier == "all":
            if facts.unresolved:
                return None
            return self.selector.matches_all(facts.crowd)
        some = self.selector.matches_some(facts.crowd)
        if some:
            return self.quantifier == "any"
        return None if facts.unresolved else self.quantifier == "none"

    def explain(self, facts: Facts) -> str:
        found = [p.label for p in facts.participants if self.selector.matches(p)]
        shown = ", ".join(found[:5]) or "none"
        note = " (participants unresolved)" if facts.unresolved else ""
        return (
            f"{self.quantifier} participant must match {self.selector.describe()}; "
            f"matching: {shown} of {len(facts.participants)}{note}"
        )


class ExternalParticipants(Condition):
    """Some participant (True) or no participant (False) is outside every internal tenant."""

    key = "external_participants"
    fact = "participants"

    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted

    def __call__(self, facts: Facts) -> Outcome:
        if facts.crowd.any_external:
            return self.wanted
        return None if facts.unresolved else not self.wanted

    def explain(self, facts: Facts) -> str:
        count = sum(1 for p in facts.participants if p.external)
        return f"{count} external participant(s); the rule wants any: {self.wanted}"


class Wall(Condition):
    """An actor on one side acting in a conversation with someone on the other side."""

    key = "wall"
    fact = "participants"

    def unknown_fact(self, facts: Facts) -> str:
        return "actor" if not facts.actor_known else "participants"

    def __init__(self, sides: tuple[tuple[str, Selector, str, Selector], ...]) -> None:
        self.sides = sides
        self._remaining: dict[tuple[int, ...], OthersOnSide] = {}

    def __call__(self, facts: Facts) -> Outcome:
        if not facts.actor_known:
            return None
        for _, actor_side, _, other_side in self.sides:
            if actor_side.matches(facts.actor):
                if other_side.matches_some(facts.other_crowd):
                    return True
                if facts.unresolved:
                    return None
        return False

    actor_only = True

    def for_actor(self, facts: Facts) -> Outcome | Condition:
        """The other sides to look for, given the sides the actor is on."""
        if not facts.actor_known:
            return None
        sides = tuple(i for i, side in enumerate(self.sides) if side[1].matches(facts.actor))
        if not sides:
            return False
        found = self._remaining.get(sides)
        if found is None:
            found = self._remaining[sides] = OthersOnSide(
                tuple(self.sides[i][3] for i in sides), self
            )
        return found

    def explain(self, facts: Facts) -> str:
        parts = []
        for from_name, actor_side, to_name, other_side in self.sides:
            actor_in = facts.actor_known and actor_side.matches(facts.actor)
            others = [p.label for p in facts.others if other_side.matches(p)]
            parts.append(
                f"{from_name}->{to_name}: actor in {from_name}: {actor_in}, "
                f"participants in {to_name}: {', '.join(others[:5]) or 'none'}"
            )
        return "; ".join(parts)


class OthersOnSide(Condition):
    """What remains of a wall once the actor is known to be on some side: someone
    else in the conversation on an opposite side."""

    key = "wall"
    fact = "participants"

    def __init__(self, others: tuple[Selector, ...], wall: Wall) -> None:
        self.others = others
        self.wall = wall

    def __call__(self, facts: Facts) -> Outcome:
        crowd = facts.other_crowd
        for selector in self.others:
            if selector.matches_some(crowd):
                return True
        return None if facts.unresolved else False

    def explain(self, facts: Facts) -> str:
        return self.wall.explain(facts)


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minute_at_or_after(moment: clock) -> int:
    """The first whole minute of the day not before ``moment``: 24:00, kept as the last
    instant of the day, is minute 1440. An event at minute ``m`` is at or after
    ``moment`` exactly when ``m`` is at or after this minute."""
    return moment.hour * 60 + moment.minute + (1 if moment.second or moment.microsecond else 0)


class TimeWindow(Condition):
    """Days of the week and a time of day range in a named time zone."""

    key = "time"

    def __init__(
        self, zone: ZoneInfo, days: frozenset[int], start: clock | None, end: clock | None
    ) -> None:
        self.zone = zone
        self.days = days
        self.start = start
        self.end = end
        # The window in minutes of the day, as Facts.local_minute gives the event's.
        self._window = None
        if start is not None and end is not None:
            self._window = (_minute_at_or_after(start), _minute_at_or_after(end))

    def __call__(self, facts: Facts) -> Outcome:
        weekday, now = facts.local_minute(self.zone)
        if weekday not in self.days:
            return False
        if self._window is None:
            return True
        start, end = self._window
        if start <= end:
            return start <= now < end
        return now >= start or now < end  # a window across midnight

    def explain(self, facts: Facts) -> str:
        local = facts.local_time(self.zone)
        days = ",".join(DAYS[d] for d in sorted(self.days))
        window = f" {self.start:%H:%M}-{self.end:%H:%M}" if self.start and self.end else ""
        return f"local time {local:%a %H:%M} {self.zone.key}; the rule wants {days}{window}"


class TextMatches(Condition):
    """Keywords (whole words, folded like identities) or regular expressions (on the
    NFKC text, case-insensitive) on the message's plain text. Applies to every message
    type that carries text, known to the product or not."""

    key = "text"
    fact = "message text"

    def __init__(
        self,
        keywords: re.Pattern[str] | None,
        regex: re.Pattern[str] | None,
        source: tuple[str, ...],
        words: tuple[str, ...],
    ) -> None:
        """``keywords`` is the regex of the folded ``words``; ``regex`` the patterns."""
        self.keywords = keywords
        self.regex = regex
        self.source = source
        # A keyword that is one whole word matches exactly when the text has that word:
        # a set test. A phrase ("front run") needs the regex, and only when the text
        # has its first word; a phrase that starts with a sign ("+1") always does.
        self.whole_words = frozenset(w for w in words if WORD.fullmatch(w))
        self.phrases = tuple(w for w in words if w not in self.whole_words)
        heads = [WORD.match(w) for w in self.phrases]
        self.heads = frozenset(h.group(0) for h in heads if h)
        self.headless = not all(heads)
        # Set by :func:`screen_texts`: one search of the rule set's patterns together,
        # so that most messages, which match none of them, are searched once.
        self.screen: Screen | None = None

    def _find(self, text: str) -> str | None:
        """The first match in ``text`` (for explanations)."""
        if self.keywords is not None:
            found = self.keywords.search(fold_text(text))
            if found:
                return found.group(0)
        if self.regex is not None:
            found = self.regex.search(nfkc_text(text))
            if found:
                return found.group(0)
        return None

    def _hit(self, facts: Facts) -> bool:
        if self.keywords is not None:
            words = facts.words
            if not self.whole_words.isdisjoint(words):
                return True
            if self.phrases and (self.headless or not self.heads.isdisjoint(words)):
                if self.keywords.search(facts.folded_text):
                    return True
        regex = self.regex
        if regex is None:
            return False
        if self.screen is not None and not facts.screened(self.screen):
            return False
        return regex.search(facts.plain_text) is not None

    def __call__(self, facts: Facts) -> Outcome:
        body = facts.event.body
        if body.parse_error:
            return None
        if body.text and self._hit(facts):
            return True
        return None if facts.event.body_truncated else False

    def explain(self, facts: Facts) -> str:
        body = facts.event.body
        if body.parse_error:
            return f"message text unreadable ({body.parse_error})"
        found = self._find(body.text or "")
        shown = repr(found) if found is not None else "nothing"
        return f"text must contain one of {', '.join(self.source)}; found {shown}"


def screen_texts(conditions: list[Condition]) -> Screen | None:
    """Give the text conditions one shared screen: the alternation of all their
    patterns. A pattern matches somewhere only if the alternation does, so when the
    screen finds nothing no pattern is searched. Patterns with groups stay out of it
    (joined, a backreference would point at another pattern's group)."""
    texts = [c for c in conditions if isinstance(c, TextMatches) and c.regex is not None]
    screened = [c for c in texts if c.regex is not None and c.regex.groups == 0]
    if len(screened) < 2:
        return None
    joined = "|".join(f"(?:{c.regex.pattern})" for c in screened if c.regex is not None)
    try:
        screen = Screen.of(re.compile(joined, re.IGNORECASE))
    except (re.error, RecursionError, OverflowError):
        return None
    for condition in screened:
        condition.screen = screen
    return screen


class FilesMatch(Condition):
    """Any attachment (``extensions`` empty) or one with a listed extension; or, with
    ``wanted`` false, no attachment at all."""

    key = "files"
    fact = "attachments"

    def __init__(self, wanted: bool, extensions: frozenset[str]) -> None:
        self.wanted = wanted
        self.extensions = extensions

    def __call__(self, facts: Facts) -> Outcome:
        body = facts.event.body
        if body.parse_error:
            return None
        if self.extensions:
            hit = not self.extensions.isdisjoint(facts.extensions)
        else:
            hit = bool(body.files)
        if hit:
            return self.wanted
        return None if facts.event.body_truncated else not self.wanted

    def explain(self, facts: Facts) -> str:
        names = [f.name or f.extension for f in facts.event.body.files]
        wanted = ", ".join(sorted(self.extensions)) or "any file"
        verb = "wants" if self.wanted else "forbids"
        return f"attachments: {', '.join(names) or 'none'}; the rule {verb} {wanted}"
