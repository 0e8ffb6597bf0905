"""The facts of one event in the form the compiled conditions read them.

Names are normalised once per decision and only when a condition asks for them, so
a rule set that never looks at participants never pays for a 1,200-member team.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from services.common.contracts import (
    ContextSource,
    CredentialStatus,
    EnrichedEvent,
    Participant,
)
from services.decider.identity import domain_of, identities_of


@dataclass(frozen=True, slots=True)
class Principal:
    """An actor or participant: its names in normal form, its domains and tenant."""

    mri: str
    ids: tuple[str, ...]
    domains: tuple[str, ...]
    tenant: str | None
    external: bool

    @property
    def label(self) -> str:
        return self.ids[0] if self.ids else self.mri or "(unknown)"


def principal(
    mri: str | None,
    email: str | None,
    upn: str | None,
    tenant: str | None,
    external: bool = False,
) -> Principal:
    ids = identities_of(email, upn, mri)
    domains = tuple(dict.fromkeys(d for d in map(domain_of, ids) if d))
    return Principal(mri or "", ids, domains, tenant.lower() if tenant else None, external)


class Facts:
    """One event, read lazily by conditions. Not shared between decisions."""

    __slots__ = ("_actor", "_local", "_others", "_participants", "event", "unresolved")

    def __init__(self, event: EnrichedEvent) -> None:
        self.event = event
        self.unresolved = event.context.source is ContextSource.UNRESOLVED
        self._actor: Principal | None = None
        self._participants: tuple[Principal, ...] | None = None
        self._others: tuple[Principal, ...] | None = None
        self._local: dict[str, datetime] = {}

    @property
    def actor_known(self) -> bool:
        actor = self.event.actor
        identified = self.event.credential.status is CredentialStatus.OK
        return identified and bool(actor.email or actor.upn or actor.mri)

    @property
    def actor(self) -> Principal:
        if self._actor is None:
            a = self.event.actor
            self._actor = principal(a.mri, a.email, a.upn, a.tenant_id)
        return self._actor

    @property
    def participants(self) -> tuple[Principal, ...]:
        if self._participants is None:
            self._participants = tuple(_participant(p) for p in self.event.participants)
        return self._participants

    @property
    def others(self) -> tuple[Principal, ...]:
        """Participants other than the actor (by MRI), for walls."""
        if self._others is None:
            mri = (self.event.actor.mri or "").lower()
            self._others = tuple(p for p in self.participants if not mri or p.mri.lower() != mri)
        return self._others

    def local_time(self, zone: ZoneInfo) -> datetime:
        key = zone.key
        if key not in self._local:
            self._local[key] = datetime.fromtimestamp(self.event.time, zone)
        return self._local[key]


def _participant(p: Participant) -> Principal:
    return principal(p.mri, p.email, p.upn, p.tenant_id, p.external)
