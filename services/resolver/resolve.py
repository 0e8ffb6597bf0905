"""One intercepted request in, one enriched event out, with its context attached.

Context that cannot be resolved (unknown conversation, no usable token, Teams down or
slow) still yields an event: marked ``unresolved`` with the reason, participants as
far as they are known, so the decider applies its fail mode. Never an exception,
never a silent empty participant list.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from services.common.contracts import (
    Action,
    ContextSource,
    ConversationType,
    EnrichedEvent,
    InterceptedRequest,
    Participant,
)
from services.common.ops import spawn
from services.resolver.classify import ParsedRequest
from services.resolver.context import Caller, Conversations
from services.resolver.credentials import Token
from services.resolver.enrich import federated_of, location_of, provenance, understand
from services.resolver.observe import Learner
from services.resolver.people import People, ProfileAccess, is_profiled, participant
from services.resolver.store import (
    ConversationRecord,
    Endpoints,
    Store,
    UserRecord,
    normal_mri,
)
from services.resolver.teams import LookupFailed
from services.resolver.ttlcache import TtlCache

log = logging.getLogger(__name__)

_CHATSVC_PREFIX = re.compile(r"^/api/chatsvc/(?P<region>[^/?]+)", re.IGNORECASE)
_LEGACY_HOST = re.compile(r"^(?P<region>[^.]+)\.ng\.msg\.teams\.microsoft\.com$", re.IGNORECASE)


def chatsvc_base(
    host: str, path: str, endpoints: Endpoints | None, region: str | None
) -> str | None:
    """The chat-service base URL for lookups: the request's own front door first."""
    host = host.lower().split(":")[0]
    if _LEGACY_HOST.match(host):
        return f"https://{host}"
    prefix = _CHATSVC_PREFIX.match(path)
    if prefix:
        return f"https://{host}/api/chatsvc/{prefix['region']}"
    if endpoints is not None and endpoints.chatsvc:
        return endpoints.chatsvc
    return f"https://{region}.ng.msg.teams.microsoft.com" if region else None


def region_of(host: str, path: str) -> str | None:
    """The region a chat-service request names in its host or prefix."""
    legacy = _LEGACY_HOST.match(host.lower().split(":")[0])
    if legacy:
        return legacy["region"]
    prefix = _CHATSVC_PREFIX.match(path)
    return prefix["region"] if prefix else None


def middle_tier_base(endpoints: Endpoints | None, region: str | None) -> str | None:
    """The middle-tier base: the authz ``middleTier`` observed, else the regional default."""
    if endpoints is not None and endpoints.middle_tier:
        return endpoints.middle_tier
    if endpoints is not None and endpoints.region:
        region = endpoints.region
    return f"https://teams.microsoft.com/api/mt/{region}" if region else None


CONTEXT_MARGIN_S = 0.25
_ROSTER_CHANGES = (Action.MEMBER_ADD, Action.MEMBER_REMOVE, Action.CHAT_RENAME)


@dataclass(slots=True)
class _Roster:
    """Participants built for one version of a conversation record."""

    record: ConversationRecord
    internal: frozenset[str]
    participants: list[Participant]


class _OnBehalf:
    """Whom a lookup for one request is made as: the acting user, their tokens, and
    where to reach Teams for them. Worked out only when Teams (or the shared store)
    must be asked, which a warm request never needs."""

    def __init__(
        self,
        store: Store,
        request: InterceptedRequest,
        event: EnrichedEvent,
        tokens: list[Token],
    ) -> None:
        self.store = store
        self.request = request
        self.event = event
        self.tokens = tokens
        self._known: tuple[Caller, ProfileAccess | None] | None = None

    async def caller(self) -> Caller:
        """Who asks the chat service, and at which address."""
        return (await self._work_out())[0]

    async def access(self) -> ProfileAccess | None:
        """How to reach the middle tier for profiles (None: no way known)."""
        return (await self._work_out())[1]

    async def _work_out(self) -> tuple[Caller, ProfileAccess | None]:
        if self._known is not None:
            return self._known
        request, actor = self.request, self.event.actor
        # Tokens are kept under the AAD object id, or the consumer id (``live:…``).
        user = actor.oid or (actor.mri.removeprefix("8:") if actor.mri else None)
        endpoints = await self.store.endpoints_of(user) if user else None
        path = request.path.split("?", 1)[0]
        region = region_of(request.host, path) or actor.region
        usable = self.tokens if self.event.credential.status.value == "ok" else []
        caller = Caller(
            user=user,
            tenant_id=actor.tenant_id,
            chatsvc_base=chatsvc_base(request.host, path, endpoints, region),
            tokens=usable,
        )
        base = middle_tier_base(endpoints, region)
        access = None
        if user and base:
            access = ProfileAccess(user, base, actor.mri, actor.tenant_id)
        self._known = (caller, access)
        return self._known


class Resolution:
    """Everything the resolver knows, and how it enriches one request."""

    def __init__(
        self,
        store: Store,
        conversations: Conversations,
        people: People,
        learner: Learner,
        resolve_timeout_s: float,
    ) -> None:
        self.store = store
        self.conversations = conversations
        self.people = people
        self.learner = learner
        self.resolve_timeout_s = resolve_timeout_s
        self.internal_tenants: frozenset[str] = frozenset()
        self._rosters: TtlCache[_Roster] = TtlCache(10_000)

    async def enrich(self, request: InterceptedRequest) -> EnrichedEvent:
        """The enriched event for one request (context attached or marked unresolved)."""
        started = time.perf_counter()
        event, parsed, tokens = understand(request)
        event.location = location_of(event.actor, self.internal_tenants)
        try:
            # A margin over the lookup budget so that slow store reads cannot hold the
            # event past the interceptor's own timeout either.
            async with asyncio.timeout(self.resolve_timeout_s + CONTEXT_MARGIN_S):
                await self._attach_context(request, event, parsed, tokens)
        except TimeoutError:
            event.context = provenance(
                ContextSource.UNRESOLVED,
                reason=f"context not ready within {self.resolve_timeout_s:.1f}s",
            )
        except Exception:
            # The request is still understood (action, actor): the decider applies its
            # fail mode to the missing context instead of the interceptor timing out.
            log.exception("context resolution failed", extra={"decision_id": request.id})
            event.context = provenance(
                ContextSource.UNRESOLVED, reason="the resolver failed to resolve context"
            )
        event.federated = federated_of(event.actor, event.participants)
        if event.context.source is ContextSource.UNRESOLVED:
            log.info(
                "context unresolved: %s", event.context.reason, extra={"decision_id": request.id}
            )
        event.resolve_ms = (time.perf_counter() - started) * 1000
        return event

    async def _attach_context(
        self,
        request: InterceptedRequest,
        event: EnrichedEvent,
        parsed: ParsedRequest,
        tokens: list[Token],
    ) -> None:
        if tokens and event.credential.status.value == "ok":
            await self.learner.learn_tokens(request.headers, tokens)
        deadline = time.monotonic() + self.resolve_timeout_s
        on_behalf = _OnBehalf(self.store, request, event, tokens)
        if event.conversation is not None:
            await self._conversation(event, parsed, on_behalf, deadline)
            if parsed.action in _ROSTER_CHANGES:
                # The roster is about to change (if allowed): learn it afresh next time.
                await self.store.forget_conversation(event.conversation.id)
                self._rosters.drop(event.conversation.id)
        else:
            await self._targets_only(event, parsed, on_behalf, deadline)

    async def _conversation(
        self,
        event: EnrichedEvent,
        parsed: ParsedRequest,
        on_behalf: _OnBehalf,
        deadline: float,
    ) -> None:
        conversation = event.conversation
        assert conversation is not None
        if conversation.id.startswith("48:"):
            conversation.type = ConversationType.SELF
            event.context = provenance(ContextSource.NOT_NEEDED)
            await self._profile(event, [], on_behalf, None, deadline)
            return
        try:
            record, cached = await self.conversations.get(
                conversation.id, on_behalf.caller, max(0.0, deadline - time.monotonic())
            )
        except LookupFailed as exc:
            event.context = provenance(ContextSource.UNRESOLVED, reason=exc.reason)
            await self._profile(event, parsed.targets, on_behalf, None, deadline)
            return
        conversation.type = ConversationType(record.type)
        conversation.topic = record.topic
        conversation.team_id = record.team_id
        conversation.tenant_id = record.tenant_id
        event.bots = list(record.bots)
        source = ContextSource.LOOKUP
        if cached:
            source = ContextSource.OBSERVED if record.source == "observed" else ContextSource.CACHE
        tenant_hint = record.tenant_id or event.actor.tenant_id
        problem = await self._profile(
            event, parsed.targets, on_behalf, record, deadline, tenant_hint
        )
        age = round(max(0.0, time.time() - record.fetched_at), 3)
        if problem is not None:
            event.context = provenance(
                ContextSource.UNRESOLVED, age, f"participant profiles unavailable: {problem}"
            )
        else:
            event.context = provenance(source, age)

    async def _targets_only(
        self,
        event: EnrichedEvent,
        parsed: ParsedRequest,
        on_behalf: _OnBehalf,
        deadline: float,
    ) -> None:
        event.context = provenance(ContextSource.NOT_NEEDED)
        if event.actor.mri is None and not parsed.targets:
            return
        problem = await self._profile(event, parsed.targets, on_behalf, None, deadline)
        if problem is not None and event.targets:
            event.context.reason = f"target profiles unavailable: {problem}"

    async def _profile(
        self,
        event: EnrichedEvent,
        targets: list[str],
        on_behalf: _OnBehalf,
        record: ConversationRecord | None,
        deadline: float,
        tenant_hint: str | None = None,
    ) -> str | None:
        """Fill participants, targets and the actor's profile; the reason if some failed."""
        roster = self._rosters.get(record.id) if record is not None else None
        if roster is not None and (
            roster.record is not record or roster.internal is not self.internal_tenants
        ):
            roster = None
        members = list(record.members) if record is not None and roster is None else []
        wanted = members + [t for t in targets if is_profiled(t)]
        if event.actor.mri and is_profiled(event.actor.mri):
            wanted.append(event.actor.mri)
        users: dict[str, UserRecord] = {}
        problem: str | None = None
        if wanted:
            users, problem = await self._users(
                wanted, on_behalf, tenant_hint or event.actor.tenant_id, deadline
            )
        internal = self.internal_tenants
        if roster is not None:
            event.participants = list(roster.participants)
        else:
            event.participants = _participants(members, users, internal)
        event.target_participants = [
            participant(t, users.get(normal_mri(t)), internal) for t in targets if "@" not in t
        ]
        if event.actor.mri:
            me = users.get(normal_mri(event.actor.mri))
            if me is not None:
                event.actor.email = event.actor.email or me.email
                event.actor.upn = event.actor.upn or me.upn
                event.actor.display_name = me.display_name
                event.actor.user_type = me.user_type
        if problem is None and record is not None and roster is None:
            unknown = [m for m in members if is_profiled(m) and normal_mri(m) not in users]
            if unknown:
                problem = f"Teams knows no profile for {len(unknown)} member(s)"
            else:
                self._remember(record, members, users, event.participants)
        return problem

    def _remember(
        self,
        record: ConversationRecord,
        members: list[str],
        users: dict[str, UserRecord],
        participants: list[Participant],
    ) -> None:
        """Keep a complete roster's participants until the conversation or one of its
        users expires, so a warm request does not rebuild a large team each time."""
        expiries = [users[normal_mri(m)].expires_at for m in members if normal_mri(m) in users]
        expires_at = min([record.expires_at, *expiries])
        roster = _Roster(record, self.internal_tenants, list(participants))
        self._rosters.put(record.id, roster, expires_at)

    async def _users(
        self,
        wanted: list[str],
        on_behalf: _OnBehalf,
        tenant_hint: str | None,
        deadline: float,
    ) -> tuple[dict[str, UserRecord], str | None]:
        known = self.store.users_in_memory(wanted)
        if all(normal_mri(m) in known for m in wanted if is_profiled(m)):
            return known, None
        # The shared store and Teams are asked in a task of their own (whom to ask them
        # as worked out there too): a request that stops waiting leaves the answer in
        # memory for the next one.
        flight = spawn(self._look_up_users(wanted, on_behalf, tenant_hint), "profile lookup")
        remaining = max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.shield(flight), remaining)
        except TimeoutError:
            return known, f"profiles not ready within {self.resolve_timeout_s}s"

    async def _look_up_users(
        self, wanted: list[str], on_behalf: _OnBehalf, tenant_hint: str | None
    ) -> tuple[dict[str, UserRecord], str | None]:
        return await self.people.users(wanted, await on_behalf.access(), tenant_hint)


def _participants(
    members: list[str], users: dict[str, Any], internal: frozenset[str]
) -> list[Participant]:
    return [participant(mri, users.get(normal_mri(mri)), internal) for mri in members]
