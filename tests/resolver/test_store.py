"""The store: an in-process TTL cache in front of MongoDB shared by every replica."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from services.resolver.credentials import Token, decode_claims
from services.resolver.store import ConversationRecord, Store, UserRecord
from services.resolver.tokens import MIDDLE_TIER, TokenCipher, new_key
from services.resolver.ttlcache import TtlCache
from tests.support.tokens import bearer

OID = "a11ce000-0000-4000-8000-000000000001"
TID = "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11"


def test_the_memory_cache_checks_expiry_on_read_and_stays_bounded() -> None:
    cache: TtlCache[str] = TtlCache(max_entries=2)
    cache.put("a", "A", expires_at=100.0)
    assert cache.get("a", now=99.0) == "A"
    assert cache.get("a", now=100.0) is None
    cache.put("b", "B", 200.0)
    cache.put("c", "C", 200.0)
    cache.put("d", "D", 200.0)
    assert len(cache) == 2 and cache.get("b", now=0) is None


@pytest.fixture
def database() -> str:
    return f"tfw_resolver_{secrets.token_hex(4)}"


def _conversation(conv_id: str, ttl: float = 600) -> ConversationRecord:
    return ConversationRecord(conv_id, "group", time.time() + ttl, members=["8:orgid:a"])


async def test_what_one_replica_learns_another_reads_from_the_shared_store(
    mongo: AsyncMongoClient[dict[str, Any]], database: str
) -> None:
    first, second = Store(mongo, database), Store(mongo, database)
    await first.ensure_indexes()
    await first.save_conversation(_conversation("19:shared@thread.v2"))
    await first.save_users(
        [UserRecord("8:orgid:A", time.time() + 600, email="a@firm.example", tenant_id=TID)]
    )
    found = await second.conversation("19:shared@thread.v2")
    assert found is not None and found.members == ["8:orgid:a"]
    users = await second.users_by_mri(["8:ORGID:a"])
    assert users["8:orgid:a"].email == "a@firm.example"
    indexes = await mongo[database].conversations.index_information()
    assert any(index.get("expireAfterSeconds") == 0 for index in indexes.values())


async def test_an_expired_record_is_not_served_even_before_the_ttl_sweep(
    mongo: AsyncMongoClient[dict[str, Any]], database: str
) -> None:
    await Store(mongo, database).save_conversation(_conversation("19:old@thread.v2", ttl=-1))
    assert await Store(mongo, database).conversation("19:old@thread.v2") is None


async def test_two_replicas_learning_the_same_user_at_once_both_succeed(
    mongo: AsyncMongoClient[dict[str, Any]], database: str
) -> None:
    replicas = [Store(mongo, database) for _ in range(4)]
    record = UserRecord("8:orgid:race", time.time() + 600, email="r@firm.example")
    await asyncio.gather(*[replica.save_users([record]) for replica in replicas for _ in range(5)])
    assert await mongo[database].users.count_documents({"_id": "8:orgid:race"}) == 1


class RacingCollection:
    """Loses the insert race once, as a second replica's upsert does."""

    def __init__(self) -> None:
        self.updates: list[tuple[dict[str, Any], bool]] = []

    async def update_one(
        self, match: dict[str, Any], change: dict[str, Any], upsert: bool = False
    ) -> None:
        self.updates.append((match, upsert))
        if upsert:
            raise DuplicateKeyError("E11000 duplicate key error")


async def test_a_lost_duplicate_key_race_is_retried_as_an_update() -> None:
    store = Store(None, "unused")
    racing = RacingCollection()
    store.db = {"users": racing}  # type: ignore[assignment]
    await store.save_users([UserRecord("8:orgid:x", time.time() + 60)])
    assert racing.updates == [({"_id": "8:orgid:x"}, True), ({"_id": "8:orgid:x"}, False)]
    assert "8:orgid:x" in await Store.users_by_mri(store, ["8:orgid:x"])


async def test_tokens_are_stored_sealed_and_purged_when_expired(
    mongo: AsyncMongoClient[dict[str, Any]], database: str
) -> None:
    cipher = TokenCipher(new_key())
    raw = bearer(OID, TID, "a@x", "https://api.spaces.skype.com")
    token = Token("bearer", raw, decode_claims(raw))
    store = Store(mongo, database)
    await store.save_token(cipher.seal(token, OID, "s1", MIDDLE_TIER, TID))
    stale = cipher.seal(token, OID, "s2", MIDDLE_TIER, TID)
    stale.expires_at = time.time() - 1
    await store.save_token(stale)
    async for doc in mongo[database].tokens.find({}):
        assert raw.encode() not in doc["ciphertext"] and raw not in str(doc)
    other = Store(mongo, database)
    usable = await other.tokens_of(OID, MIDDLE_TIER)
    assert [cipher.open(sealed) for sealed in usable] == [raw]
    assert await other.purge_tokens() >= 1
    assert await mongo[database].tokens.count_documents({}) == 1


async def test_an_unreachable_database_is_a_miss_not_a_failure() -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        "mongodb://127.0.0.1:9/?directConnection=true", serverSelectionTimeoutMS=200
    )
    store = Store(client, "nowhere")
    await store.save_conversation(_conversation("19:local@thread.v2"))
    assert await store.conversation("19:local@thread.v2") is not None  # this replica's cache
    assert await store.conversation("19:other@thread.v2") is None
    assert await store.users_by_mri(["8:orgid:nobody"]) == {}
    await client.close()


class RacingBulkCollection(RacingCollection):
    """A bulk upsert where another replica inserted one of the keys first."""

    async def bulk_write(self, operations: list[Any], ordered: bool = True) -> None:
        from pymongo.errors import BulkWriteError

        raise BulkWriteError(
            {"writeErrors": [{"index": 1, "code": 11000, "errmsg": "E11000"}], "nInserted": 0}
        )


async def test_a_lost_race_inside_a_bulk_upsert_is_retried_for_that_key_only() -> None:
    store = Store(None, "unused")
    racing = RacingBulkCollection()
    store.db = {"users": racing}  # type: ignore[assignment]
    records = [UserRecord(f"8:orgid:{n}", time.time() + 60) for n in range(3)]
    await store.save_users(records)
    assert racing.updates == [({"_id": "8:orgid:1"}, False)]
