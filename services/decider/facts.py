"""The facts of one event in the form the compiled conditions read them.

Names are normalised once per decision and only when a condition asks for them, so
a rule set that never looks at participants never pays for a 1,200-member team.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from services.common.contracts import (
    Action,
    ContextSource,
    CredentialStatus,
    EnrichedEvent,
    Participant,
)
from services.common.rosters import LARGE_ROSTER, SameRoster
from services.decider.identity import WORD, domain_of, fold_text, identities_of, nfkc_text
from services.decider.screen import Screen


class Principal:
    """An actor or participant: its names in normal form, its domains and tenant.

    Instances are shared through a cache and must not be changed; identity equality
    is what the crowd cache relies on.
    """

    __slots__ = ("domains", "external", "ids", "mri", "tenant")

    def __init__(
        self,
        mri: str,
        ids: tuple[str, ...],
        domains: tuple[str, ...],
        tenant: str | None,
        external: bool,
    ) -> None:
        self.mri = mri
        self.ids = ids
        self.domains = domains
        self.tenant = tenant
        self.external = external

    @property
    def label(self) -> str:
        return self.ids[0] if self.ids else self.mri or "(unknown)"


@lru_cache(maxsize=65536)
def principal(
    mri: str | None,
    email: str | None,
    upn: str | None,
    tenant: str | None,
    external: bool = False,
) -> Principal:
    """The principal for these names (cached: the same people act all day)."""
    ids = identities_of(email, upn, mri)
    domains = tuple(dict.fromkeys(d for d in map(domain_of, ids) if d))
    return Principal(mri or "", ids, domains, tenant.lower() if tenant else None, external)


class Crowd:
    """Every name, domain and tenant of a set of principals, for one-pass matching.

    ``seen`` remembers what each selector found in this crowd: a conversation's
    people are the same from one message to the next, so a rule asks once per
    conversation, not once per message.
    """

    __slots__ = (
        "any_external",
        "domains",
        "domains_blob",
        "ids",
        "ids_blob",
        "people",
        "seen",
        "tenants",
    )

    def __init__(self, people: tuple[Principal, ...]) -> None:
        self.people = people
        self.seen: dict[tuple[object, str], bool] = {}
        ids: set[str] = set()
        domains: set[str] = set()
        tenants: set[str] = set()
        external = False
        for person in people:
            ids.update(person.ids)
            domains.update(person.domains)
            if person.tenant:
                tenants.add(person.tenant)
            external = external or person.external
        self.ids = frozenset(ids)
        self.domains = frozenset(domains)
        self.tenants = frozenset(tenants)
        self.ids_blob = "\n".join(ids)
        self.domains_blob = "\n".join(domains)
        self.any_external = external

    @staticmethod
    @lru_cache(maxsize=4096)
    def of(people: tuple[Principal, ...]) -> Crowd:
        """The crowd of these principals (cached: the same conversations recur)."""
        return Crowd(people)


class Facts:
    """One event, read lazily by conditions. Not shared between decisions."""

    __slots__ = (
        "_actor",
        "_crowd",
        "_extensions",
        "_folded",
        "_local",
        "_other_crowd",
        "_others",
        "_participants",
        "_plain",
        "_screened",
        "_words",
        "actor_known",
        "event",
        "unresolved",
    )

    def __init__(self, event: EnrichedEvent) -> None:
        self.event = event
        self.unresolved = event.context.source is ContextSource.UNRESOLVED
        actor = event.actor
        self.actor_known = event.credential.status is CredentialStatus.OK and bool(
            actor.email or actor.upn or actor.mri
        )
        self._actor: Principal | None = None
        self._participants: tuple[Principal, ...] | None = None
        self._others: tuple[Principal, ...] | None = None
        self._crowd: Crowd | None = None
        self._other_crowd: Crowd | None = None
        self._local: dict[ZoneInfo, tuple[int, int]] = {}
        self._folded: str | None = None
        self._plain: str | None = None
        self._words: frozenset[str] | None = None
        self._extensions: frozenset[str] | None = None
        self._screened: dict[Screen, bool] = {}

    @property
    def actor(self) -> Principal:
        if self._actor is None:
            a = self.event.actor
            self._actor = principal(a.mri, a.email, a.upn, a.tenant_id)
        return self._actor

    @property
    def participants(self) -> tuple[Principal, ...]:
        """Who is in the conversation once the action is done: for ``member.add`` and
        ``chat.create`` the people being brought in count, so a wall sees them."""
        if self._participants is None:
            people = self.event.participants
            if self.event.action in _BRINGS_PEOPLE_IN and self.event.target_participants:
                present = {p.mri.lower() for p in people}
                joining = self.event.target_participants
                people = people + [p for p in joining if p.mri.lower() not in present]
            self._participants = principals_of(people)
        return self._participants

    @property
    def others(self) -> tuple[Principal, ...]:
        """Participants other than the actor (by MRI), for walls."""
        if self._others is None:
            mri = (self.event.actor.mri or "").lower()
            everyone = self.participants
            self._others = (
                tuple([p for p in everyone if p.mri.lower() != mri]) if mri else everyone
            )
        return self._others

    @property
    def crowd(self) -> Crowd:
        """All participants at once."""
        if self._crowd is None:
            self._crowd = Crowd.of(self.participants)
        return self._crowd

    @property
    def other_crowd(self) -> Crowd:
        """All participants but the actor, at once."""
        if self._other_crowd is None:
            self._other_crowd = Crowd.of(self.others)
        return self._other_crowd

    @property
    def folded_text(self) -> str:
        """The message text folded like identities (for keywords)."""
        if self._folded is None:
            self._folded = fold_text(self.event.body.text or "")
        return self._folded

    @property
    def plain_text(self) -> str:
        """The message text in NFKC form (for regular expressions)."""
        if self._plain is None:
            self._plain = nfkc_text(self.event.body.text or "")
        return self._plain

    @property
    def words(self) -> frozenset[str]:
        """The whole words of the folded text, for keyword tests by set."""
        if self._words is None:
            self._words = frozenset(WORD.findall(self.folded_text))
        return self._words

    def screened(self, screen: Screen) -> bool:
        """Does the plain text match the rule set's text screen (searched once)?"""
        found = self._screened.get(screen)
        if found is None:
            found = self._screened[screen] = screen.finds(self.plain_text, self.folded_text)
        return found

    @property
    def extensions(self) -> frozenset[str]:
        """The attachments' extensions, folded and without a leading dot."""
        if self._extensions is None:
            files = self.event.body.files
            self._extensions = frozenset([fold_text(f.extension).lstrip(".") for f in files])
        return self._extensions

    def local_time(self, zone: ZoneInfo) -> datetime:
        return datetime.fromtimestamp(self.event.time, zone)

    def local_minute(self, zone: ZoneInfo) -> tuple[int, int]:
        """Weekday (Monday 0) and minute of the day (0 to 1439) of the event in a time
        zone."""
        found = self._local.get(zone)
        if found is None:
            found = self._local[zone] = _local_minute(zone, int(self.event.time // 60))
        return found


@lru_cache(maxsize=4096)
def _local_minute(zone: ZoneInfo, minute: int) -> tuple[int, int]:
    # Windows are written to the minute, so the minute decides them exactly (a zone
    # whose offset has seconds puts the event within the minute it names).
    local = datetime.fromtimestamp(minute * 60, zone)
    return local.weekday(), local.hour * 60 + local.minute


_BRINGS_PEOPLE_IN = frozenset({Action.MEMBER_ADD, Action.CHAT_CREATE})


def _participant(p: Participant) -> Principal:
    return principal(p.mri, p.email, p.upn, p.tenant_id, p.external)


# Conversations of up to LARGE_ROSTER people are kept, at most MAX_CONVERSATIONS of
# them: the key holds each person's names, so that bounds the memory (tens of MB at
# worst; the least recently used go first). A larger team is kept by the identity of
# its participant objects instead (below).
MAX_CONVERSATIONS = 2048


def principals_of(people: list[Participant]) -> tuple[Principal, ...]:
    """The principals of a conversation's people, kept by every name of every person:
    the same conversations recur, and one lookup costs less than one per person."""
    if len(people) > LARGE_ROSTER:
        return _large_roster(people)
    return _principals(tuple([(p.mri, p.email, p.upn, p.tenant_id, p.external) for p in people]))


# Larger rosters are kept by the identity of their participant objects
# (services.common.rosters.SameRoster): the decider's intake hands every event of a
# large team the same ones. About 0.8 KB a person beside the intake's own memo.
_large: SameRoster[tuple[Principal, ...]] = SameRoster()


def _large_roster(people: list[Participant]) -> tuple[Principal, ...]:
    principals = _large.get(people)
    if principals is None:
        principals = tuple([_participant(p) for p in people])
        _large.put(people, principals)
    return principals


@lru_cache(maxsize=MAX_CONVERSATIONS)
def _principals(names: tuple[tuple[str | bool | None, ...], ...]) -> tuple[Principal, ...]:
    return tuple([principal(*person) for person in names])
