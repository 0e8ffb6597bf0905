"""Learning a conversation's type and roster, and attaching it to a request.

The conversation type comes from the thread properties: ``chat`` with
``uniquerosterthread`` is direct (the ``19:uni01_…`` ids), any other ``chat`` a group;
``meeting``; ``space`` with ``spaceType`` standard is the team root, which doubles as
the General channel; ``space`` with ``spaceTypes`` and ``parentSpaces`` a private
channel; ``topic`` a channel whose members are the team's (``spaceId``). Legacy
``…@unq.gbl.spaces`` chats are direct and their participants come from the
consumption horizons. ``48:`` conversations are the user's own.

Lookups run single-flight per conversation in a background task, so a request that
gives up waiting still leaves the answer in the cache for the next one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from hmac import compare_digest
from typing import Any
from urllib.parse import quote

from services.common.contracts import ConversationType
from services.common.ops import spawn
from services.resolver.credentials import Token
from services.resolver.store import ConversationRecord, Store, normal_mri
from services.resolver.teams import LookupFailed, TeamsClient, TokenRejected, chatsvc_auth
from services.resolver.tokens import CHATSVC, TokenCipher, purpose_of

log = logging.getLogger(__name__)

_LEGACY_DIRECT = re.compile(
    r"^19:(?P<a>[0-9a-f-]{36})_(?P<b>[0-9a-f-]{36})@unq\.gbl\.spaces$", re.IGNORECASE
)


@dataclass(slots=True)
class Caller:
    """The user a lookup is made for, and with which credentials and where."""

    user: str | None  # oid (lower case)
    tenant_id: str | None
    chatsvc_base: str | None
    tokens: list[Token] = field(default_factory=list)


def thread_type(properties: dict[str, Any]) -> ConversationType:
    """The product's conversation type from Teams' thread properties."""
    kind = str(properties.get("threadType", "")).lower()
    if kind == "chat" or kind == "sfbinteropchat":
        unique = str(properties.get("uniquerosterthread", "")).lower() == "true"
        return ConversationType.DIRECT if unique else ConversationType.GROUP
    if kind == "meeting":
        return ConversationType.MEETING
    if kind == "topic":
        return ConversationType.CHANNEL
    if kind == "space":
        if properties.get("spaceTypes") and properties.get("parentSpaces"):
            return ConversationType.PRIVATE_CHANNEL
        # The team root (spaceType standard) doubles as the General channel.
        return ConversationType.CHANNEL
    return ConversationType.UNKNOWN


def member_ids(answer: Any) -> list[str]:
    """Member MRIs of a thread or members answer."""
    members = answer.get("members") if isinstance(answer, dict) else None
    if not isinstance(members, list):
        return []
    return [m["id"] for m in members if isinstance(m, dict) and isinstance(m.get("id"), str)]


def horizon_ids(answer: Any) -> list[str]:
    """Participant MRIs of a consumption-horizons answer."""
    items = answer.get("consumptionhorizons") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        return []
    return [h["id"] for h in items if isinstance(h, dict) and isinstance(h.get("id"), str)]


def split_bots(mris: list[str]) -> tuple[list[str], list[str]]:
    """Members and bots (``28:``) apart, each once, in order."""
    members: list[str] = []
    bots: list[str] = []
    for mri in dict.fromkeys(normal_mri(m) for m in mris):
        (bots if mri.startswith("28:") else members).append(mri)
    return members, bots


def _first_space(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, str) and value.strip():
        return value.split(",")[0].strip()
    return None


def thread_path(conversation_id: str) -> str:
    return "/v1/threads/" + quote(conversation_id, safe="")


class Conversations:
    """Conversation records: from the store, or learned from Teams on a miss."""

    def __init__(
        self,
        store: Store,
        client: TeamsClient,
        cipher: TokenCipher,
        conversation_ttl_s: float,
        page_size: int = 100,
        max_pages: int = 200,
    ) -> None:
        self.store = store
        self.client = client
        self.cipher = cipher
        self.ttl_s = conversation_ttl_s
        self.page_size = page_size
        self.max_pages = max_pages
        self._flights: dict[str, asyncio.Task[ConversationRecord | LookupFailed]] = {}

    async def get(
        self,
        conversation_id: str,
        caller: Callable[[], Awaitable[Caller]],
        timeout_s: float,
    ) -> tuple[ConversationRecord, bool]:
        """The record and whether it came from the cache. ``caller`` says whom to ask
        Teams as; it is asked only on a miss, inside the lookup, so that working it out
        counts against ``timeout_s`` and a request arriving meanwhile joins the same
        lookup. Raises :class:`LookupFailed` (with a reason) when Teams cannot tell us
        within ``timeout_s``."""
        cached = await self.store.conversation(conversation_id)
        if cached is not None:
            return cached, True
        flight = self._flights.get(conversation_id)
        if flight is None:
            flight = spawn(self._flight(conversation_id, caller), f"learn {conversation_id[:40]}")
            self._flights[conversation_id] = flight
            flight.add_done_callback(lambda _: self._flights.pop(conversation_id, None))
        try:
            record = await asyncio.wait_for(asyncio.shield(flight), timeout_s)
        except TimeoutError:
            reason = f"the conversation could not be learned within {timeout_s:.1f}s"
            raise LookupFailed(reason) from None
        if isinstance(record, LookupFailed):
            raise record
        return record, False

    async def _flight(
        self, conversation_id: str, caller: Callable[[], Awaitable[Caller]]
    ) -> ConversationRecord | LookupFailed:
        """One lookup shared by every request waiting for it; failures are results."""
        try:
            return await self._learn(conversation_id, await caller())
        except LookupFailed as exc:
            log.info("conversation lookup failed: %s", exc.reason)
            return exc
        except Exception:
            log.exception("conversation lookup failed unexpectedly")
            return LookupFailed("the resolver failed while learning the conversation")

    async def _learn(self, conversation_id: str, caller: Caller) -> ConversationRecord:
        if caller.chatsvc_base is None:
            raise LookupFailed("no chat-service address known for the request")
        expires = time.time() + self.ttl_s
        legacy = _LEGACY_DIRECT.match(conversation_id)
        if conversation_id.lower().endswith("@unq.gbl.spaces"):
            answer = await self._chatsvc(
                "horizons", caller, thread_path(conversation_id) + "/consumptionhorizons"
            )
            ids = horizon_ids(answer)
            if not ids and legacy:
                ids = [f"8:orgid:{legacy['a']}", f"8:orgid:{legacy['b']}"]
            members, bots = split_bots(ids)
            record = ConversationRecord(
                conversation_id, ConversationType.DIRECT.value, expires, members=members, bots=bots
            )
            await self.store.save_conversation(record)
            return record
        answer = await self._chatsvc(
            "thread", caller, thread_path(conversation_id) + "?view=msnp24Equivalent"
        )
        properties = answer.get("properties") if isinstance(answer, dict) else None
        if not isinstance(properties, dict):
            raise LookupFailed("Teams described the conversation without thread properties")
        kind = thread_type(properties)
        tenant = properties.get("tenantid") or properties.get("tenantId")
        record = ConversationRecord(
            conversation_id,
            kind.value,
            expires,
            topic=properties.get("topic") if isinstance(properties.get("topic"), str) else None,
            tenant_id=tenant.lower() if isinstance(tenant, str) else None,
        )
        if str(properties.get("threadType", "")).lower() == "topic":
            team = properties.get("spaceId")
            if not isinstance(team, str) or not team:
                raise LookupFailed("Teams named no team for the channel")
            record.team_id = team
            team_record = await self._team(team, caller, expires, record.tenant_id)
            record.members, record.bots = list(team_record.members), list(team_record.bots)
        elif kind in (
            ConversationType.DIRECT,
            ConversationType.GROUP,
            ConversationType.MEETING,
        ) and (member_ids(answer) and not answer.get("nextLink")):
            record.members, record.bots = split_bots(member_ids(answer))
        else:
            if kind is ConversationType.PRIVATE_CHANNEL:
                record.team_id = _first_space(properties.get("parentSpaces"))
            record.members, record.bots = split_bots(await self._members(conversation_id, caller))
        if not record.members:
            raise LookupFailed("Teams listed no members for the conversation")
        await self.store.save_conversation(record)
        return record

    async def _team(
        self, team_id: str, caller: Caller, expires: float, tenant: str | None
    ) -> ConversationRecord:
        cached = await self.store.conversation(team_id)
        if cached is not None:
            return cached
        members, bots = split_bots(await self._members(team_id, caller))
        record = ConversationRecord(
            team_id,
            ConversationType.CHANNEL.value,
            expires,
            tenant_id=tenant,
            members=members,
            bots=bots,
        )
        await self.store.save_conversation(record)
        return record

    async def _members(self, conversation_id: str, caller: Caller) -> list[str]:
        """Every member, following ``nextLink`` pages."""
        query = f"view=msnp24Equivalent&pageSize={self.page_size}"
        path = f"{thread_path(conversation_id)}/members?{query}"
        url: str | None = None
        found: list[str] = []
        for _ in range(self.max_pages):
            answer = await self._chatsvc("members", caller, path, url)
            found.extend(member_ids(answer))
            link = answer.get("nextLink") if isinstance(answer, dict) else None
            if not isinstance(link, str) or not link:
                return found
            url = link
        raise LookupFailed(f"the member list ran past {self.max_pages} pages")

    async def _chatsvc(
        self, kind: str, caller: Caller, path: str, absolute: str | None = None
    ) -> Any:
        """One chat-service call with the request's own token, then the user's others."""
        assert caller.chatsvc_base is not None
        url = absolute or caller.chatsvc_base.rstrip("/") + path
        tried = 0
        for token_kind, raw, drop_key in await self._chatsvc_tokens(caller):
            tried += 1
            try:
                return await self.client.get(kind, url, chatsvc_auth(token_kind, raw))
            except TokenRejected:
                log.info(
                    "a chat-service token of user %s was rejected; trying another", caller.user
                )
                if drop_key is not None:
                    await self.store.drop_token(drop_key)
        if tried:
            raise LookupFailed("every chat-service token of the actor was rejected")
        raise LookupFailed("no usable chat-service token for the actor")

    async def _chatsvc_tokens(self, caller: Caller) -> list[tuple[str, str, str | None]]:
        now = time.time()
        own = [
            (token.kind, token.raw, None)
            for token in caller.tokens
            if purpose_of(token) == CHATSVC and (token.expires_at or now + 1) > now
        ]
        stored: list[tuple[str, str, str | None]] = []
        if caller.user is not None:
            for sealed in await self.store.tokens_of(caller.user, CHATSVC):
                raw = self.cipher.open(sealed)
                if raw is not None and not any(compare_digest(raw, item[1]) for item in own):
                    stored.append((sealed.kind, raw, sealed.key))
        return own + stored
