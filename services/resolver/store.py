"""What the resolver knows: an in-process TTL cache in front of MongoDB.

Three kinds of knowledge, each in its own collection shared by every replica:
``conversations`` (type and roster, by conversation id), ``users`` (profile and
tenant, by MRI) and ``tokens`` (sealed, per user, session and purpose). A fourth,
``endpoints``, keeps each user's chat-service and middle-tier base URLs learned from
the token exchange. Expiry is checked on every read (TTL indexes only sweep once a
minute); the indexes do the clean-up.

The store never fails a request: a database error is logged and treated as a miss,
and a write that loses a duplicate-key race to another replica is retried as an
update.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from services.common.ops import spawn
from services.resolver.tokens import SealedToken
from services.resolver.ttlcache import TtlCache

log = logging.getLogger(__name__)


# How long "nothing stored" is believed before MongoDB is asked again.
NEGATIVE_TTL_S = 30.0


def normal_mri(mri: str) -> str:
    """MRIs compare case-insensitively (their GUIDs and consumer names do)."""
    return mri.strip().lower()


@dataclass(slots=True)
class ConversationRecord:
    """A conversation's type and roster (member MRIs; bots apart)."""

    id: str
    type: str
    expires_at: float
    fetched_at: float = field(default_factory=time.time)
    topic: str | None = None
    team_id: str | None = None
    tenant_id: str | None = None
    members: list[str] = field(default_factory=list)
    bots: list[str] = field(default_factory=list)
    source: str = "lookup"


@dataclass(slots=True)
class UserRecord:
    """One user's profile as Teams described it; e-mail and UPN are lower case."""

    mri: str
    expires_at: float
    fetched_at: float = field(default_factory=time.time)
    email: str | None = None
    upn: str | None = None
    display_name: str | None = None
    tenant_id: str | None = None
    user_type: str | None = None
    tenant_name: str | None = None  # lower case; fetchShortProfile's only tenant hint
    source: str = "lookup"


@dataclass(slots=True)
class Endpoints:
    """A user's service base URLs, from the token exchange (authz) response."""

    user: str
    expires_at: float
    chatsvc: str | None = None
    middle_tier: str | None = None
    region: str | None = None


def _date(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class Store:
    """The cache layers: memory first, then MongoDB when one is configured."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]] | None,
        database: str,
        max_entries: int = 100_000,
    ) -> None:
        self.client = client
        self.db = client[database] if client is not None else None
        self.conversations: TtlCache[ConversationRecord] = TtlCache(max_entries)
        self.users: TtlCache[UserRecord] = TtlCache(max_entries)
        self.endpoints: TtlCache[Endpoints] = TtlCache(max_entries)
        self.tokens: TtlCache[SealedToken] = TtlCache(max_entries)
        # Users with no endpoints learned yet: not asked of MongoDB on every request.
        self._no_endpoints: TtlCache[bool] = TtlCache(max_entries)

    async def ensure_indexes(self) -> None:
        """TTL indexes for clean-up, and the lookup index of the token collection."""
        if self.db is None:
            return
        for name in ("conversations", "users", "endpoints", "tokens"):
            await self.db[name].create_index("expires_at", expireAfterSeconds=0)
        await self.db.tokens.create_index([("user", 1), ("purpose", 1)])

    # --- conversations ------------------------------------------------------------------

    async def conversation(self, conversation_id: str) -> ConversationRecord | None:
        now = time.time()
        found = self.conversations.get(conversation_id, now)
        if found is not None or self.db is None:
            return found
        doc = await self._find_one("conversations", conversation_id)
        if doc is None or float(doc.get("expires_at_s", 0)) <= now:
            return None
        record = ConversationRecord(**_fields(doc, ConversationRecord))
        self.conversations.put(record.id, record, record.expires_at)
        return record

    async def forget_conversation(self, conversation_id: str) -> None:
        """Drop a conversation here and in the shared store (other replicas' memory
        keeps it until it expires)."""
        self.conversations.drop(conversation_id)
        if self.db is not None:
            try:
                await self.db.conversations.delete_one({"_id": conversation_id})
            except PyMongoError as exc:
                log.warning("could not forget a conversation: %s", exc)

    async def save_conversation(self, record: ConversationRecord) -> None:
        self.conversations.put(record.id, record, record.expires_at)
        await self._upsert("conversations", record.id, asdict(record), record.expires_at)

    # --- users ----------------------------------------------------------------------------

    def users_in_memory(self, mris: list[str]) -> dict[str, UserRecord]:
        """Fresh records this replica holds, without asking the shared store."""
        now = time.time()
        found: dict[str, UserRecord] = {}
        for mri in mris:
            key = normal_mri(mri)
            record = self.users.get(key, now)
            if record is not None:
                found[key] = record
        return found

    async def users_by_mri(self, mris: list[str]) -> dict[str, UserRecord]:
        """Fresh records for the MRIs known; unknown or expired ones are absent."""
        now = time.time()
        found: dict[str, UserRecord] = {}
        missing: list[str] = []
        for mri in mris:
            key = normal_mri(mri)
            record = self.users.get(key, now)
            if record is None:
                missing.append(key)
            else:
                found[key] = record
        if missing and self.db is not None:
            for doc in await self._find_many("users", missing):
                if float(doc.get("expires_at_s", 0)) <= now:
                    continue
                record = UserRecord(**_fields(doc, UserRecord))
                self.users.put(record.mri, record, record.expires_at)
                found[record.mri] = record
        return found

    async def save_users(self, records: list[UserRecord], background: bool = False) -> None:
        """Keep user records here at once and in the shared store; ``background`` lets
        the caller go on while a large batch is written (this replica serves it from
        memory meanwhile; the others read it once the write lands)."""
        for record in records:
            record.mri = normal_mri(record.mri)
            self.users.put(record.mri, record, record.expires_at)
        items = [(record.mri, asdict(record), record.expires_at) for record in records]
        if background and self.db is not None:
            spawn(self._upsert_many("users", items), "store users")
            return
        await self._upsert_many("users", items)

    # --- endpoints --------------------------------------------------------------------------

    async def endpoints_of(self, user: str) -> Endpoints | None:
        now = time.time()
        found = self.endpoints.get(user, now)
        if found is not None or self.db is None or self._no_endpoints.get(user, now):
            return found
        doc = await self._find_one("endpoints", user)
        if doc is None or float(doc.get("expires_at_s", 0)) <= now:
            self._no_endpoints.put(user, True, now + NEGATIVE_TTL_S)
            return None
        record = Endpoints(**_fields(doc, Endpoints))
        self.endpoints.put(user, record, record.expires_at)
        return record

    async def save_endpoints(self, record: Endpoints) -> None:
        self._no_endpoints.drop(record.user)
        self.endpoints.put(record.user, record, record.expires_at)
        await self._upsert("endpoints", record.user, asdict(record), record.expires_at)

    # --- tokens -------------------------------------------------------------------------------

    async def save_token(self, sealed: SealedToken) -> None:
        self.tokens.put(sealed.key, sealed, sealed.expires_at)
        doc = sealed.to_document()
        doc.pop("_id")
        await self._upsert("tokens", sealed.key, doc, sealed.expires_at)

    async def tokens_of(self, user: str, purpose: str) -> list[SealedToken]:
        """Every unexpired sealed token of one user for one purpose, latest expiry first."""
        now = time.time()
        found = {
            key: sealed
            for key, sealed in self.tokens.items()
            if sealed.user == user and sealed.purpose == purpose and sealed.expires_at > now
        }
        if self.db is not None:
            try:
                cursor = self.db.tokens.find(
                    {"user": user, "purpose": purpose, "expires_at_s": {"$gt": now}}
                )
                async for doc in cursor:
                    sealed = SealedToken.from_document(doc)
                    if sealed.key not in found:
                        found[sealed.key] = sealed
                        self.tokens.put(sealed.key, sealed, sealed.expires_at)
            except PyMongoError as exc:
                log.warning("token read failed, using this replica's tokens only: %s", exc)
        return sorted(found.values(), key=lambda sealed: sealed.expires_at, reverse=True)

    async def drop_token(self, key: str) -> None:
        self.tokens.drop(key)
        if self.db is not None:
            try:
                await self.db.tokens.delete_one({"_id": key})
            except PyMongoError as exc:
                log.warning("could not drop a rejected token: %s", exc)

    async def purge_tokens(self) -> int:
        """Remove expired tokens now, in memory and in the store; returns how many here."""
        now = time.time()
        purged = self.tokens.purge(now)
        if self.db is not None:
            try:
                result = await self.db.tokens.delete_many({"expires_at_s": {"$lte": now}})
                purged += result.deleted_count
            except PyMongoError as exc:
                log.warning("token purge failed: %s", exc)
        return purged

    # --- MongoDB plumbing -------------------------------------------------------------------

    async def _find_one(self, collection: str, key: str) -> dict[str, Any] | None:
        assert self.db is not None
        try:
            return await self.db[collection].find_one({"_id": key})
        except PyMongoError as exc:
            log.warning("%s read failed, treating as a miss: %s", collection, exc)
            return None

    async def _find_many(self, collection: str, keys: list[str]) -> list[dict[str, Any]]:
        assert self.db is not None
        try:
            return [doc async for doc in self.db[collection].find({"_id": {"$in": keys}})]
        except PyMongoError as exc:
            log.warning("%s read failed, treating as a miss: %s", collection, exc)
            return []

    async def _upsert_many(
        self, collection: str, items: list[tuple[str, dict[str, Any], float]]
    ) -> None:
        """Upsert many documents in one round trip; keys that lose a duplicate-key race
        to another replica are written again as plain updates."""
        if self.db is None or not items:
            return
        if len(items) == 1:
            await self._upsert(collection, *items[0])
            return
        target = self.db[collection]
        operations = [
            UpdateOne({"_id": key}, {"$set": _document(values, expires)}, upsert=True)
            for key, values, expires in items
        ]
        try:
            try:
                await target.bulk_write(operations, ordered=False)
            except BulkWriteError as exc:
                lost = {
                    error["index"]
                    for error in exc.details.get("writeErrors", [])
                    if error.get("code") == 11000
                }
                if len(lost) < len(exc.details.get("writeErrors", [])):
                    raise
                for index in sorted(lost):
                    key, values, expires = items[index]
                    await target.update_one({"_id": key}, {"$set": _document(values, expires)})
        except PyMongoError as exc:
            log.warning("%s write failed; kept in this replica only: %s", collection, exc)

    async def _upsert(
        self, collection: str, key: str, values: dict[str, Any], expires_at: float
    ) -> None:
        if self.db is None:
            return
        document = _document(values, expires_at)
        target = self.db[collection]
        try:
            try:
                await target.update_one({"_id": key}, {"$set": document}, upsert=True)
            except DuplicateKeyError:
                # Another replica inserted the same key between our match and our insert:
                # the document exists now, so a plain update lands.
                await target.update_one({"_id": key}, {"$set": document})
        except PyMongoError as exc:
            log.warning("%s write failed; kept in this replica only: %s", collection, exc)


def _document(values: dict[str, Any], expires_at: float) -> dict[str, Any]:
    document = {**values, "expires_at_s": expires_at, "expires_at": _date(expires_at)}
    document.pop("_id", None)
    return document


def _fields(doc: dict[str, Any], model: Any) -> dict[str, Any]:
    names = model.__dataclass_fields__
    return {name: doc[name] for name in names if name in doc}
