"""Passive learning: what the client's own traffic teaches the resolver for free.

- Tokens on any request (intercepted or observed) are sealed and kept per user,
  session and purpose.
- The token exchange (authz) answer names the user's region, the exact chat-service
  and middle-tier base URLs, and carries a fresh skypetoken.
- Thread properties, complete member lists, consumption horizons and profile answers
  the client received fill the cache without a call of ours.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from typing import Any

import orjson

from services.common.contracts import ConversationType, Observation
from services.resolver.classify import normalise, split_path
from services.resolver.context import (
    horizon_ids,
    member_ids,
    split_bots,
    thread_type,
)
from services.resolver.credentials import Token, TokenProblem, decode_claims, extract_tokens
from services.resolver.people import People, profile_items, user_from_profile
from services.resolver.store import ConversationRecord, Endpoints, Store
from services.resolver.tokens import TokenCipher, purpose_of, session_of, user_of
from services.resolver.ttlcache import TtlCache

log = logging.getLogger(__name__)

_AUTHZ = re.compile(r"/(?:api/)?(?:auth(?:svc)?/)?v1\.0/authz(?:/consumer)?/?$", re.IGNORECASE)
_THREAD = re.compile(r"^/v1/threads/(?P<conv>[^/]+)/?$", re.IGNORECASE)
_MEMBERS = re.compile(r"^/v1/threads/(?P<conv>[^/]+)/members/?$", re.IGNORECASE)
_HORIZONS = re.compile(r"^/v1/threads/(?P<conv>[^/]+)/consumptionhorizons/?$", re.IGNORECASE)
_SHORT = re.compile(r"/beta/users/fetchshortprofile/?$", re.IGNORECASE)
_FEDERATED = re.compile(r"/beta/users/fetchfederated/?$", re.IGNORECASE)


class Learner:
    """Turns tokens and observed lookup answers into store records."""

    def __init__(
        self,
        store: Store,
        cipher: TokenCipher,
        conversation_ttl_s: float,
        user_ttl_s: float,
        people: People | None = None,
    ) -> None:
        self.store = store
        self.people = people
        self.cipher = cipher
        self.conversation_ttl_s = conversation_ttl_s
        self.user_ttl_s = user_ttl_s
        # Digests of tokens already sealed, so a hot path request does not re-seal.
        self._seen: TtlCache[bool] = TtlCache(50_000)

    async def learn_tokens(self, headers: dict[str, str], tokens: list[Token]) -> int:
        """Seal and keep every usable, unexpired token; returns how many were new."""
        now = time.time()
        learned = 0
        for token in tokens:
            expires = token.expires_at
            purpose = purpose_of(token)
            user = user_of(token)
            if purpose is None or user is None or (expires is not None and expires <= now):
                continue
            digest = hashlib.sha256(token.raw.encode()).hexdigest()
            if self._seen.get(digest, now):
                continue
            tenant = token.claims.get("tid")
            sealed = self.cipher.seal(
                token,
                user,
                session_of(headers, token),
                purpose,
                tenant.lower() if isinstance(tenant, str) else None,
            )
            await self.store.save_token(sealed)
            self._seen.put(digest, True, sealed.expires_at)
            learned += 1
        return learned

    async def learn(self, observation: Observation) -> str:
        """Learn from one observation; returns what was learned (for logs and tests)."""
        tokens, _ = extract_tokens(observation.request_headers)
        await self.learn_tokens(observation.request_headers, tokens)
        if observation.kind == "token":
            return "token"
        if observation.status is None or not 200 <= observation.status < 300:
            return "ignored: not a success"
        if observation.response_truncated:
            return "ignored: truncated answer"
        try:
            answer: Any = orjson.loads(observation.response_body)
        except orjson.JSONDecodeError:
            return "ignored: answer not JSON"
        path, query = split_path(observation.path)
        requester = next((t for t in tokens if user_of(t)), None)
        if _AUTHZ.search(path):
            return await self._authz(answer, observation, requester)
        normal = normalise(path)
        if found := _THREAD.match(normal):
            return await self._thread(found["conv"], answer)
        if found := _MEMBERS.match(normal):
            return await self._members(found["conv"], answer, query)
        if found := _HORIZONS.match(normal):
            return await self._horizons(found["conv"], answer)
        if _FEDERATED.search(normal):
            return await self._profiles(answer, None, None)
        if _SHORT.search(normal):
            return await self._profiles(answer, requester, _text_claim(requester, "tid"))
        return "ignored: not a lookup we learn from"

    async def _authz(self, answer: Any, observation: Observation, requester: Token | None) -> str:
        if not isinstance(answer, dict):
            return "ignored: authz answer not an object"
        learned = "authz"
        skype = _skypetoken_of(answer)
        user = user_of(requester) if requester else None
        if skype is not None:
            try:
                token = Token("skypetoken", skype, decode_claims(skype))
            except TokenProblem as exc:
                log.info("authz answer carried an unreadable skypetoken: %s", exc.reason)
            else:
                user = user or user_of(token)
                await self.learn_tokens(observation.request_headers, [token])
                learned += "+skypetoken"
        gtms = answer.get("regionGtms")
        if user is not None and isinstance(gtms, dict):
            chatsvc = gtms.get("chatServiceAfd") or gtms.get("chatService")
            middle = gtms.get("middleTier")
            region = answer.get("region")
            await self.store.save_endpoints(
                Endpoints(
                    user=user,
                    expires_at=time.time() + self.user_ttl_s,
                    chatsvc=chatsvc if isinstance(chatsvc, str) else None,
                    middle_tier=middle if isinstance(middle, str) else None,
                    region=region if isinstance(region, str) else None,
                )
            )
            learned += "+endpoints"
        return learned

    async def _thread(self, conversation_id: str, answer: Any) -> str:
        properties = answer.get("properties") if isinstance(answer, dict) else None
        if not isinstance(properties, dict):
            return "ignored: thread without properties"
        kind = thread_type(properties)
        ids = member_ids(answer)
        # Channels take the team's roster and large threads page theirs: a thread
        # answer alone is a complete roster only for chats and meetings.
        if kind not in (ConversationType.DIRECT, ConversationType.GROUP, ConversationType.MEETING):
            return "ignored: roster not in the thread answer"
        if not ids or answer.get("nextLink"):
            return "ignored: roster incomplete"
        tenant = properties.get("tenantid") or properties.get("tenantId")
        members, bots = split_bots(ids)
        topic = properties.get("topic")
        await self.store.save_conversation(
            ConversationRecord(
                conversation_id,
                kind.value,
                time.time() + self.conversation_ttl_s,
                topic=topic if isinstance(topic, str) else None,
                tenant_id=tenant.lower() if isinstance(tenant, str) else None,
                members=members,
                bots=bots,
                source="observed",
            )
        )
        return "thread"

    async def _members(self, conversation_id: str, answer: Any, query: dict[str, list[str]]) -> str:
        # A single complete page updates the roster of a conversation whose type we know.
        continuation = any(
            key.lower() in ("skiptoken", "continuation", "syncstate") for key in query
        )
        if continuation or not isinstance(answer, dict) or answer.get("nextLink"):
            return "ignored: partial member list"
        known = await self.store.conversation(conversation_id)
        if known is None or not member_ids(answer):
            return "ignored: members of an unknown conversation"
        known.members, known.bots = split_bots(member_ids(answer))
        known.source = "observed"
        await self.store.save_conversation(known)
        return "members"

    async def _horizons(self, conversation_id: str, answer: Any) -> str:
        if not conversation_id.lower().endswith("@unq.gbl.spaces"):
            return "ignored: horizons of a thread"
        ids = horizon_ids(answer)
        if not ids:
            return "ignored: no participants"
        members, bots = split_bots(ids)
        await self.store.save_conversation(
            ConversationRecord(
                conversation_id,
                ConversationType.DIRECT.value,
                time.time() + self.conversation_ttl_s,
                members=members,
                bots=bots,
                source="observed",
            )
        )
        return "horizons"

    async def _profiles(
        self, answer: Any, requester: Token | None, requester_tenant: str | None
    ) -> str:
        """Keep profiles whose tenant is certain: fetchFederated names it; for
        fetchShortProfile, the requester's own, a tenant name already tied to an id,
        or (no tenant name at all) the requester's tenant as in 2021. Others wait for
        a lookup of ours, which asks fetchFederated."""
        expires = time.time() + self.user_ttl_s
        me = f"8:orgid:{user_of(requester)}" if requester and user_of(requester) else None
        records = []
        for item in profile_items(answer):
            record = user_from_profile(item, None, expires, "observed")
            if record.tenant_id is None and requester_tenant is not None:
                tied = self.people.tenant_of_name(record.tenant_name) if self.people else None
                if record.mri == me and self.people is not None:
                    self.people.tie(record.tenant_name, requester_tenant)
                if record.mri == me or record.tenant_name is None:
                    record.tenant_id = requester_tenant.lower()
                elif tied is not None:
                    record.tenant_id = tied
            if record.tenant_id is not None:
                records.append(record)
        if not records:
            return "ignored: no profile with a certain tenant"
        await self.store.save_users(records)
        return "profiles"


def _text_claim(token: Token | None, claim: str) -> str | None:
    value = token.claims.get(claim) if token else None
    return value if isinstance(value, str) and value else None


def _skypetoken_of(answer: dict[str, Any]) -> str | None:
    tokens = answer.get("tokens")
    if isinstance(tokens, dict) and isinstance(tokens.get("skypeToken"), str):
        return str(tokens["skypeToken"])
    consumer = answer.get("skypeToken")
    if isinstance(consumer, dict) and isinstance(consumer.get("skypetoken"), str):
        return str(consumer["skypetoken"])
    return None
