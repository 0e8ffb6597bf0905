"""The token vault: sealed with AES-GCM, bound to user, session and purpose."""

from __future__ import annotations

import pytest

from services.resolver.credentials import Token, decode_claims
from services.resolver.tokens import (
    CHATSVC,
    MIDDLE_TIER,
    SealedToken,
    TokenCipher,
    new_key,
    purpose_of,
    session_of,
    user_of,
)
from tests.support.tokens import bearer, skypetoken

OID = "a11ce000-0000-4000-8000-000000000001"
TID = "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11"


def _token(kind: str, raw: str) -> Token:
    return Token(kind, raw, decode_claims(raw))


@pytest.mark.parametrize(
    ("token", "purpose"),
    [
        (_token("skypetoken", skypetoken(OID, TID)), CHATSVC),
        (_token("bearer", bearer(OID, TID, "a@x")), CHATSVC),
        (_token("bearer", bearer(OID, TID, "a@x", "https://api.spaces.skype.com")), MIDDLE_TIER),
        (_token("bearer", bearer(OID, TID, "a@x", "https://graph.microsoft.com")), None),
    ],
)
def test_each_token_is_used_only_for_the_service_it_was_issued_for(
    token: Token, purpose: str | None
) -> None:
    assert purpose_of(token) == purpose
    assert user_of(token) == OID


def test_a_sealed_token_opens_only_under_its_key_and_its_own_record() -> None:
    token = _token("skypetoken", skypetoken(OID, TID))
    cipher = TokenCipher(new_key())
    sealed = cipher.seal(token, OID, "s1", CHATSVC, TID)
    assert token.raw.encode() not in sealed.ciphertext
    assert token.raw not in repr(sealed)
    assert cipher.open(sealed) == token.raw
    assert TokenCipher(new_key()).open(sealed) is None
    moved = SealedToken.from_document({**sealed.to_document(), "user": "someone-else"})
    assert cipher.open(moved) is None


def test_a_session_is_the_client_session_id_or_a_digest_of_the_token() -> None:
    token = _token("skypetoken", skypetoken(OID, TID))
    assert session_of({"x-ms-session-id": "abc"}, token) == "abc"
    derived = session_of({}, token)
    assert derived.startswith("t:") and token.raw not in derived
