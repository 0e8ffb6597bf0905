"""Teams tokens at rest (real SecantusDB): sealed with AES-GCM, no fragment in the
store; after the token key is rotated (docs/security.md, deploy/k8s/README.md) a
record sealed under the old key opens as nothing (lookups then drop it), the token is
learned again under the new key from the next request that carries it; a sealed token
copied onto another user's record does not open."""

from __future__ import annotations

import base64
import secrets

from services.resolver.credentials import read_credentials
from services.resolver.service import build_resolution
from services.resolver.settings import ResolverSettings
from services.resolver.teams import TeamsClient
from services.resolver.tokens import CHATSVC, SealedToken
from tests.support.tokens import skypetoken

OID = "a11ce000-0000-4000-8000-000000000001"
OTHER = "b0b00000-0000-4000-8000-000000000002"
TID = "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11"


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _replica(mongo, database: str, key: str):
    """One resolver replica's resolution, as the service builds it, under ``key``."""
    settings = ResolverSettings.load(env={"TFW_TOKEN_KEY": key, "TFW_DATABASE": database})
    return build_resolution(settings, mongo, TeamsClient(enabled=False))


async def _learn(resolution, token: str, session: str = "s-1") -> None:
    headers = {"authentication": f"skypetoken={token}", "x-ms-session-id": session}
    _, _, tokens = read_credentials(headers)
    assert await resolution.learner.learn_tokens(headers, tokens) == 1


async def _readable(resolution, user: str) -> list[str]:
    sealed = await resolution.store.tokens_of(user, CHATSVC)
    opened = [resolution.conversations.cipher.open(item) for item in sealed]
    return [raw for raw in opened if raw is not None]


async def test_tokens_are_stored_sealed_with_no_fragment_in_the_database(mongo) -> None:
    database = f"tfw_rotate_{secrets.token_hex(4)}"
    token = skypetoken(OID, TID)
    await _learn(_replica(mongo, database, _key()), token)
    documents = [doc async for doc in mongo[database]["tokens"].find()]
    assert len(documents) == 1
    stored = repr(documents) + "".join(
        bytes(value).decode("latin-1") for doc in documents for value in doc.values()
        if isinstance(value, bytes)
    )
    for fragment in token.split("."):
        assert fragment[:24] not in stored
    assert "s-1" not in repr(documents[0]["_id"]), "the session id is readable in the key"


async def test_after_a_key_rotation_old_records_open_as_nothing_and_tokens_are_relearned(
    mongo,
) -> None:
    database = f"tfw_rotate_{secrets.token_hex(4)}"
    token = skypetoken(OID, TID)
    old = _replica(mongo, database, _key())
    await _learn(old, token)
    assert await _readable(old, OID) == [token]

    new = _replica(mongo, database, _key())  # the rotated key, a fresh replica
    assert await new.store.tokens_of(OID, CHATSVC), "the old record is still stored"
    assert await _readable(new, OID) == []

    # The next request of that user carries the token: learned under the new key.
    await _learn(new, token)
    assert await _readable(new, OID) == [token]
    # The old key can no longer read what the new replica sealed.
    stale = _replica(mongo, database, _key())
    assert await _readable(stale, OID) == []


async def test_a_sealed_token_moved_to_another_users_record_does_not_open(mongo) -> None:
    database = f"tfw_rotate_{secrets.token_hex(4)}"
    key = _key()
    replica = _replica(mongo, database, key)
    await _learn(replica, skypetoken(OID, TID))
    document = await mongo[database]["tokens"].find_one({"user": OID})
    assert document is not None
    sealed = SealedToken.from_document(document)
    moved = SealedToken(OTHER, sealed.session, sealed.purpose, sealed.kind, sealed.expires_at,
                        sealed.nonce, sealed.ciphertext, sealed.tenant_id)
    fresh = _replica(mongo, database, key)
    assert fresh.conversations.cipher.open(sealed) is not None
    assert fresh.conversations.cipher.open(moved) is None
