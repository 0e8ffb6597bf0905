"""Minting and reading realistic, unsigned Teams tokens.

The simulators never check signatures: Teams does that, and the firewall only reads
claims. A skypetoken carries ``skypeid`` (``orgid:{oid}``, no ``8:``), ``tid``,
``rgn``, ``iat``/``exp``; a bearer token the standard AAD claims ``aud``, ``iss``,
``oid``, ``tid``, ``upn``, ``exp`` (see the protocol notes, section 2).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from typing import Any

import orjson

AUDIENCE_CHAT = "https://ic3.teams.office.com"
AUDIENCE_SPACES = "https://api.spaces.skype.com"
TEAMS_WEB_APP = "5e3ce6c0-2b1f-4285-8d4b-75ee78787346"
DEFAULT_LIFETIME_S = 3600


class TokenError(ValueError):
    """A credential that is not a readable JWT; the message is safe to show."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(claims: dict[str, Any]) -> str:
    """An RS256-shaped JWT with the given claims and a random, meaningless signature."""
    header = _b64(orjson.dumps({"alg": "RS256", "typ": "JWT", "kid": "tfw-sim"}))
    return f"{header}.{_b64(orjson.dumps(claims))}.{_b64(secrets.token_bytes(32))}"


def mint_skypetoken(
    oid: str, tenant_id: str, region: str, lifetime_s: int = DEFAULT_LIFETIME_S,
    now: float | None = None,
) -> str:
    """A skypetoken for the user ``oid`` in ``tenant_id`` (claims as Teams mints them)."""
    issued = int(time.time() if now is None else now)
    return encode_jwt(
        {
            "iat": issued,
            "exp": issued + lifetime_s,
            "skypeid": f"orgid:{oid}",
            "tid": tenant_id,
            "rgn": region,
            "scp": 780,
            "csi": str(issued),
            "aad_iat": issued,
            "aad_uti": secrets.token_urlsafe(16),
            "aad_appid": TEAMS_WEB_APP,
        }
    )


def mint_bearer(
    oid: str, tenant_id: str, upn: str, audience: str = AUDIENCE_CHAT,
    lifetime_s: int = DEFAULT_LIFETIME_S, now: float | None = None,
) -> str:
    """An AAD access token for ``audience`` (the chat service or the spaces middle tier)."""
    issued = int(time.time() if now is None else now)
    return encode_jwt(
        {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime_s,
            "oid": oid,
            "tid": tenant_id,
            "upn": upn,
            "unique_name": upn,
            "appid": TEAMS_WEB_APP,
            "scp": "Teams.AccessAsUser.All" if audience == AUDIENCE_CHAT else "user_impersonation",
            "ver": "1.0",
        }
    )


def read_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT without checking its signature; :class:`TokenError` if it is
    not one."""
    parts = token.strip().split(".")
    if len(parts) != 3 or not parts[1]:
        raise TokenError("not a JWT")
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise TokenError("JWT payload is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise TokenError("JWT payload is not an object")
    return claims


def is_expired(claims: dict[str, Any], now: float | None = None) -> bool:
    """True when ``exp`` is missing, unreadable or in the past."""
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        return True
    return exp <= (time.time() if now is None else now)
