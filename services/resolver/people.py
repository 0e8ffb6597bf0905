"""Who people are: MRI kinds, profile lookups in batches, and participants.

Profiles come from the middle tier with the acting user's spaces token:
``fetchShortProfile`` (batches of up to 900) and ``fetchFederated`` (its answer is an
object with ``value`` or a bare array, and names each user's ``tenantId``).

fetchShortProfile gives no tenant id, only a ``tenantName``. The 2021 tool put every
user found there in the caller's tenant, which makes a colleague from a sister tenant
look like one of ours. Here a ``tenantName`` is mapped to a tenant id only when an
authoritative source tied the two (the actor's own token, or a fetchFederated
answer); a user whose tenant name is not tied yet is asked of fetchFederated, in one
batch. Users with no tenant name, or unknown to fetchFederated, fall back to the
conversation's tenant as in 2021. (A tenant that names itself like ours is therefore
taken for ours, exactly as the 2021 tool took everyone.)

Lookups are single-flight per user: a user being looked up for one request is
awaited, not fetched again, by the next.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.common.contracts import Participant, ParticipantKind
from services.resolver.store import Store, UserRecord, normal_mri
from services.resolver.teams import LookupFailed, TeamsClient, TokenRejected
from services.resolver.tokens import MIDDLE_TIER, TokenCipher

log = logging.getLogger(__name__)

SHORT_PROFILE = (
    "/beta/users/fetchShortProfile?isMailAddress=false&enableGuest=true"
    "&includeIBBarredUsers=true&skypeTeamsInfo=true"
)
FEDERATED = "/beta/users/fetchFederated?edEnabled=false&includeDisabledAccounts=true"
# Identities outside any Entra tenant: always outside our walls.
_ALWAYS_EXTERNAL = {
    ParticipantKind.CONSUMER,
    ParticipantKind.ANONYMOUS,
    ParticipantKind.PHONE,
    ParticipantKind.SKYPE_FOR_BUSINESS,
}


def kind_of(mri: str, user_type: str | None = None) -> ParticipantKind:
    """The kind of identity behind an MRI (and, for AAD users, their user type)."""
    lowered = mri.strip().lower()
    if lowered.startswith("8:orgid:"):
        guest = (user_type or "").lower() == "guest"
        return ParticipantKind.GUEST if guest else ParticipantKind.USER
    if lowered.startswith(("8:teamsvisitor:", "teamsvisitor:")):
        return ParticipantKind.ANONYMOUS
    if lowered.startswith("8:"):
        return ParticipantKind.CONSUMER
    if lowered.startswith("28:"):
        return ParticipantKind.BOT
    if lowered.startswith("48:"):
        return ParticipantKind.SYSTEM
    if lowered.startswith("2:"):
        return ParticipantKind.SKYPE_FOR_BUSINESS
    if lowered.startswith("4:"):
        return ParticipantKind.PHONE
    return ParticipantKind.UNKNOWN


def is_profiled(mri: str) -> bool:
    """Only AAD users (``8:orgid:``) have middle-tier profiles."""
    return mri.strip().lower().startswith("8:orgid:")


def participant(mri: str, user: UserRecord | None, internal_tenants: frozenset[str]) -> Participant:
    """One participant as rules see it; ``external`` means outside every internal tenant."""
    kind = kind_of(mri, user.user_type if user else None)
    tenant = user.tenant_id if user else None
    if kind in _ALWAYS_EXTERNAL:
        external = True
    else:
        external = tenant is not None and tenant.lower() not in internal_tenants
    return Participant(
        mri=mri,
        kind=kind,
        email=user.email if user else None,
        upn=user.upn if user else None,
        tenant_id=tenant,
        display_name=user.display_name if user else None,
        user_type=user.user_type if user else None,
        external=external,
    )


def _lower(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def profile_items(answer: Any) -> list[dict[str, Any]]:
    """The user objects of a profile answer: ``{value: [...]}`` or a bare array."""
    items = answer.get("value") if isinstance(answer, dict) else answer
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict) and isinstance(item.get("mri"), str)]


def user_from_profile(
    item: dict[str, Any], tenant_id: str | None, expires_at: float, source: str = "lookup"
) -> UserRecord:
    """A user record from one profile object; its own ``tenantId`` wins over the hint."""
    email = _lower(item.get("email")) or _lower(item.get("mail"))
    upn = _lower(item.get("userPrincipalName"))
    return UserRecord(
        mri=normal_mri(item["mri"]),
        expires_at=expires_at,
        email=email or upn,
        upn=upn,
        display_name=_text(item.get("displayName")),
        tenant_id=_lower(item.get("tenantId")) or tenant_id,
        user_type=_text(item.get("userType")),
        tenant_name=_lower(item.get("tenantName")),
        source=source,
    )


@dataclass(slots=True)
class ProfileAccess:
    """How to reach the middle tier for one acting user."""

    user: str  # the acting user's oid: whose spaces tokens to use
    base: str  # https://teams.microsoft.com/api/mt/{region} or the authz middleTier
    actor_mri: str | None = None
    actor_tenant: str | None = None  # from the actor's token: authoritative


class People:
    """Profile lookups with single flight, on top of the store and the Teams client."""

    def __init__(
        self,
        store: Store,
        client: TeamsClient,
        cipher: TokenCipher,
        user_ttl_s: float,
        batch_size: int = 900,
    ) -> None:
        self.store = store
        self.client = client
        self.cipher = cipher
        self.user_ttl_s = user_ttl_s
        self.batch_size = batch_size
        self._flights: dict[str, asyncio.Future[UserRecord | None]] = {}
        # tenantName (lower case) -> tenant id, tied by an authoritative source.
        self.tenant_names: dict[str, str] = {}

    async def users(
        self, mris: Iterable[str], access: ProfileAccess | None, tenant_hint: str | None
    ) -> tuple[dict[str, UserRecord], str | None]:
        """Records for every profiled MRI given, looking up the unknown ones.

        Returns the records found and, when some could not be looked up, why.
        """
        wanted = list(dict.fromkeys(normal_mri(m) for m in mris if is_profiled(m)))
        known = await self.store.users_by_mri(wanted)
        missing = [mri for mri in wanted if mri not in known]
        if not missing:
            return known, None
        waiting = {mri: self._flights[mri] for mri in missing if mri in self._flights}
        mine = [mri for mri in missing if mri not in waiting]
        problem: str | None = None
        if mine:
            loop = asyncio.get_running_loop()
            futures = {mri: loop.create_future() for mri in mine}
            self._flights.update(futures)
            try:
                found = await self._look_up(mine, access, tenant_hint)
            except LookupFailed as exc:
                found = {}
                problem = exc.reason
            finally:
                for mri, future in futures.items():
                    self._flights.pop(mri, None)
                    if not future.done():
                        future.set_result(found.get(mri) if problem is None else None)
            known.update(found)
        for mri, future in waiting.items():
            record = await future
            if record is not None:
                known[mri] = record
        if problem is None and any(mri not in known for mri in waiting):
            problem = "another lookup of these users failed"
        return known, problem

    async def _look_up(
        self, mris: list[str], access: ProfileAccess | None, tenant_hint: str | None
    ) -> dict[str, UserRecord]:
        if access is None:
            raise LookupFailed("no middle-tier address known for the actor")
        expires = time.time() + self.user_ttl_s
        await self._tie_actor(access)
        found: dict[str, UserRecord] = {}
        for start in range(0, len(mris), self.batch_size):
            batch = mris[start : start + self.batch_size]
            answer = await self._middle_tier("profiles", access, SHORT_PROFILE, batch)
            for item in profile_items(answer):
                record = user_from_profile(item, None, expires)
                found[record.mri] = record
        actor = normal_mri(access.actor_mri) if access.actor_mri else None
        if actor in found and access.actor_tenant:
            self.tie(found[actor].tenant_name, access.actor_tenant)
        strangers: list[str] = []
        for mri in mris:
            short = found.get(mri)
            if short is None:
                strangers.append(mri)
            elif mri == actor and access.actor_tenant:
                short.tenant_id = access.actor_tenant
            elif short.tenant_name is None:
                short.tenant_id = tenant_hint
            elif short.tenant_name in self.tenant_names:
                short.tenant_id = self.tenant_names[short.tenant_name]
            else:
                strangers.append(mri)
        for start in range(0, len(strangers), self.batch_size):
            batch = strangers[start : start + self.batch_size]
            answer = await self._middle_tier("federated", access, FEDERATED, batch)
            for item in profile_items(answer):
                federated = user_from_profile(item, None, expires)
                earlier = found.get(federated.mri)
                if earlier is not None and federated.tenant_id:
                    self.tie(earlier.tenant_name, federated.tenant_id)
                    federated.tenant_name = federated.tenant_name or earlier.tenant_name
                found[federated.mri] = federated
        for record in found.values():
            if record.tenant_id is None:
                record.tenant_id = tenant_hint
        await self.store.save_users(list(found.values()), background=True)
        return found

    def tenant_of_name(self, tenant_name: str | None) -> str | None:
        """The tenant id tied to a tenant name, if an authoritative source tied it."""
        return self.tenant_names.get(tenant_name) if tenant_name else None

    def tie(self, tenant_name: str | None, tenant_id: str) -> None:
        """Tie a tenant name to its id; the first authoritative tie stays."""
        if tenant_name and tenant_name not in self.tenant_names:
            self.tenant_names[tenant_name] = tenant_id.lower()

    async def _tie_actor(self, access: ProfileAccess) -> None:
        """Tie the actor's tenant name from their cached profile to their token's tenant."""
        if access.actor_mri is None or access.actor_tenant is None:
            return
        known = await self.store.users_by_mri([access.actor_mri])
        record = known.get(normal_mri(access.actor_mri))
        if record is not None:
            self.tie(record.tenant_name, access.actor_tenant)

    async def _middle_tier(
        self, kind: str, access: ProfileAccess, path: str, body: list[str]
    ) -> Any:
        """One middle-tier call, trying each valid spaces token of the user in turn."""
        sealed_tokens = await self.store.tokens_of(access.user, MIDDLE_TIER)
        for sealed in sealed_tokens:
            raw = self.cipher.open(sealed)
            if raw is None:
                await self.store.drop_token(sealed.key)
                continue
            headers = {"Authorization": f"Bearer {raw}"}
            try:
                return await self.client.post(kind, access.base.rstrip("/") + path, headers, body)
            except TokenRejected:
                log.info("a middle-tier token of user %s was rejected; trying another", access.user)
                await self.store.drop_token(sealed.key)
        if sealed_tokens:
            raise LookupFailed("every middle-tier token of the actor was rejected")
        raise LookupFailed("no middle-tier token known for the actor")
