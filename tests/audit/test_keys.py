"""API keys: shown once, stored as hashes, scoped, revocable."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.audit.keys import ApiKeys


@pytest.fixture
async def keys(mongodb_uri: str) -> AsyncIterator[ApiKeys]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    database = "tfw_audit_keys_" + secrets.token_hex(4)
    yield ApiKeys(client, database)
    await client.drop_database(database)
    await client.close()


async def test_a_new_key_authenticates_and_its_secret_is_not_stored(keys: ApiKeys) -> None:
    key, secret = await keys.create("siem team", "read")
    found = await keys.authenticate(secret)
    assert found is not None and found.key_id == key.key_id and found.scope == "read"
    stored = await keys.keys.find_one({"_id": key.key_id})
    assert stored is not None
    assert secret.rsplit("_", 1)[-1] not in str(stored)


async def test_a_wrong_secret_or_a_malformed_key_is_refused(keys: ApiKeys) -> None:
    _, secret = await keys.create("ops", "admin")
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert await keys.authenticate(forged) is None
    assert await keys.authenticate("tfwk_000000000000_" + "x" * 43) is None
    assert await keys.authenticate("not a key") is None


async def test_a_revoked_key_stops_working_and_is_listed_as_revoked(keys: ApiKeys) -> None:
    key, secret = await keys.create("leaver", "read")
    assert await keys.revoke(key.key_id)
    assert await keys.authenticate(secret) is None
    assert not await keys.revoke(key.key_id)
    [listed] = await keys.list()
    assert not listed.active


async def test_read_keys_cannot_act_as_admin_and_admin_keys_can_read(keys: ApiKeys) -> None:
    reader, _ = await keys.create("r", "read")
    admin, _ = await keys.create("a", "admin")
    assert reader.allows("read") and not reader.allows("admin")
    assert admin.allows("read") and admin.allows("admin")
    with pytest.raises(ValueError, match="scope"):
        await keys.create("x", "root")
