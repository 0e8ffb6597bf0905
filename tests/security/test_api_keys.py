"""API keys of the audit query API (real SecantusDB): only a SHA-256 of each secret is
stored, secrets are compared in constant time even for an unknown key id, revoked and
malformed keys open nothing, and every key action through ``tfw audit keys`` lands in
the admin log without the secret."""

from __future__ import annotations

import hmac
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient

from services.audit import keys as keys_module
from services.audit.keys import ApiKeys
from tfw.stack import ROOT


@pytest.fixture
async def api_keys(mongodb_uri: str) -> AsyncIterator[tuple[ApiKeys, Any, str]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_uri, serverSelectionTimeoutMS=5000
    )
    database = f"tfw_keys_{secrets.token_hex(4)}"
    yield ApiKeys(client, database), client[database]["api_keys"], database
    await client.close()


async def test_only_a_hash_of_the_secret_is_stored(api_keys) -> None:
    keys, collection, _ = api_keys
    key, presented = await keys.create("siem", "read")
    secret = presented.removeprefix("tfwk_").split("_", 1)[1]
    stored = await collection.find_one({"_id": key.key_id})
    assert stored is not None
    text = repr(stored)
    assert secret not in text and presented not in text
    assert stored["sha256"] != secret and len(stored["sha256"]) == 64
    assert await keys.authenticate(presented) == key


async def test_wrong_revoked_and_malformed_keys_open_nothing(api_keys) -> None:
    keys, _, _ = api_keys
    key, presented = await keys.create("ops", "admin")
    key_id, secret = presented.removeprefix("tfwk_").split("_", 1)
    wrong = f"tfwk_{key_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    unknown = f"tfwk_{'0' * 12}_{secret}"
    for attempt in (wrong, unknown, "", "tfwk_", presented + "x", presented.upper(),
                    "tfwk_" + "../" * 20, "\x00" * 64):
        assert await keys.authenticate(attempt) is None, attempt
    assert await keys.revoke(key.key_id)
    assert await keys.authenticate(presented) is None


async def test_secrets_are_compared_in_constant_time_even_for_unknown_key_ids(
    api_keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, _, _ = api_keys
    _, presented = await keys.create("ops", "read")
    calls: list[tuple[str, str]] = []
    compare = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", recording)
    secret = presented.removeprefix("tfwk_").split("_", 1)[1]
    assert await keys.authenticate(presented) is not None
    assert await keys.authenticate(f"tfwk_{'f' * 12}_{secret}") is None
    assert len(calls) == 2, "a comparison was skipped, so timing tells ids apart"
    assert all(len(a) == len(b) == 64 for a, b in calls)


def test_key_actions_through_the_command_line_are_in_the_admin_log(mongodb_uri: str) -> None:
    database = f"tfw_keys_{secrets.token_hex(4)}"
    env = {**os.environ, "TFW_MONGODB_URI": mongodb_uri, "TFW_DATABASE": database}

    def tfw(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "tfw", "audit", "keys", *args],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
                              check=True)
        return done.stdout

    created = tfw("create", "--name", "siem", "--scope", "read")
    presented = created.strip().splitlines()[-1]
    key_id = presented.removeprefix("tfwk_").split("_", 1)[0]
    tfw("revoke", key_id)
    with MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000) as mongo:
        log = list(mongo[database]["audit_admin_log"].find({}, {"_id": 0}))
    assert [entry["action"] for entry in log] == ["key.create", "key.revoke"]
    assert all(entry["detail"]["key_id"] == key_id for entry in log)
    assert all(entry["who"].startswith("cli") for entry in log)
    assert presented.removeprefix("tfwk_").split("_", 1)[1] not in repr(log)
