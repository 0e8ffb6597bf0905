"""Minted tokens carry the claims the protocol notes record (section 2)."""

from __future__ import annotations

import time

import pytest

from tfw.sim.tokens import (
    AUDIENCE_CHAT,
    AUDIENCE_SPACES,
    TokenError,
    is_expired,
    mint_bearer,
    mint_skypetoken,
    read_claims,
)

OID = "40a0a000-1111-4000-8000-00000000000a"
TID = "7d3f0a12-8c4b-4e21-9a6d-1b2c3d4e5f60"


def test_a_skypetoken_names_the_user_without_the_8_prefix_and_has_no_oid() -> None:
    claims = read_claims(mint_skypetoken(OID, TID, "emea"))
    assert claims["skypeid"] == f"orgid:{OID}"
    assert (claims["tid"], claims["rgn"]) == (TID, "emea")
    assert not {"oid", "upn", "email"} & set(claims)
    assert claims["exp"] - claims["iat"] == 3600


def test_a_bearer_token_has_audience_issuer_oid_tenant_and_upn() -> None:
    claims = read_claims(mint_bearer(OID, TID, "nora@meridian.example", AUDIENCE_SPACES))
    assert claims["aud"] == AUDIENCE_SPACES
    assert claims["iss"] == f"https://sts.windows.net/{TID}/"
    assert (claims["oid"], claims["tid"], claims["upn"]) == (OID, TID, "nora@meridian.example")
    assert read_claims(mint_bearer(OID, TID, "n@m.example"))["aud"] == AUDIENCE_CHAT


def test_tokens_are_unpadded_base64url() -> None:
    token = mint_skypetoken(OID, TID, "emea")
    assert "=" not in token and "+" not in token and "/" not in token
    assert token.count(".") == 2


def test_expiry_is_read_from_exp() -> None:
    now = time.time()
    assert is_expired(read_claims(mint_skypetoken(OID, TID, "emea", lifetime_s=-1)))
    assert not is_expired(read_claims(mint_skypetoken(OID, TID, "emea")), now)
    assert is_expired({}, now)


@pytest.mark.parametrize("token", ["not-a-token", "a.b", "a.!!!.c", "a.bm90IGpzb24.c"])
def test_something_that_is_not_a_jwt_is_refused(token: str) -> None:
    with pytest.raises(TokenError):
        read_claims(token)
