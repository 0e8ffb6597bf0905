"""Minting realistic (unsigned) Teams tokens for tests."""

from __future__ import annotations

import base64
import time

import orjson


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict[str, object]) -> str:
    header = _b64(orjson.dumps({"alg": "RS256", "typ": "JWT", "kid": "test"}))
    return f"{header}.{_b64(orjson.dumps(claims))}.{_b64(b'signature')}"


def skypetoken(oid: str, tid: str, region: str = "emea", lifetime: int = 3600) -> str:
    now = int(time.time())
    return jwt(
        {
            "iat": now,
            "exp": now + lifetime,
            "skypeid": f"orgid:{oid}",
            "tid": tid,
            "rgn": region,
            "scp": 780,
            "csi": str(now),
            "aad_appid": "5e3ce6c0-2b1f-4285-8d4b-75ee78787346",
        }
    )


def bearer(oid: str, tid: str, upn: str, audience: str = "https://ic3.teams.office.com") -> str:
    now = int(time.time())
    return jwt(
        {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tid}/",
            "iat": now,
            "exp": now + 3600,
            "oid": oid,
            "tid": tid,
            "upn": upn,
            "scp": "Teams.AccessAsUser.All",
        }
    )
