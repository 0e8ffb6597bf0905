"""API keys for the query API: high-entropy secrets, stored only as SHA-256 hashes.

A key reads ``tfwk_<key id>_<secret>``. The key id finds the stored entry; the
secret's hash is compared with :func:`hmac.compare_digest`. SHA-256 without a salt
is enough here because the secret is 256 random bits, not a password a person chose.
Scopes: ``read`` (queries and exports) and ``admin`` (also verification and purge).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient

KEY_PATTERN = re.compile(r"^tfwk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
SCOPES = ("read", "admin")


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    key_id: str
    name: str
    scope: str
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """Admin keys may do everything a read key may."""
        return self.active and (self.scope == "admin" or scope == "read")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(document: dict[str, Any]) -> ApiKey:
    return ApiKey(
        key_id=document["_id"],
        name=document.get("name", ""),
        scope=document.get("scope", "read"),
        created_at=float(document.get("created_at", 0.0)),
        revoked_at=document.get("revoked_at"),
    )


class ApiKeys:
    """The ``api_keys`` collection."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self.keys = client[database]["api_keys"]

    async def create(self, name: str, scope: str) -> tuple[ApiKey, str]:
        """Make a key; returns it and the full secret, which is shown once and never
        stored."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        document = {
            "_id": key_id,
            "name": name,
            "scope": scope,
            "sha256": _digest(secret),
            "created_at": time.time(),
            "revoked_at": None,
        }
        await self.keys.insert_one(document)
        return _key(document), f"tfwk_{key_id}_{secret}"

    async def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        return [_key(document) async for document in self.keys.find().sort("created_at", 1)]

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key; False when there is no such active key."""
        result = await self.keys.update_one(
            {"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": time.time()}}
        )
        return result.modified_count == 1

    async def authenticate(self, presented: str) -> ApiKey | None:
        """The active key behind a presented secret, or None."""
        match = KEY_PATTERN.match(presented.strip())
        if match is None:
            return None
        key_id, secret = match.groups()
        document = await self.keys.find_one({"_id": key_id})
        expected = document.get("sha256", "") if document else "0" * 64
        # Compare even when the id is unknown, so timing does not tell ids apart.
        same = hmac.compare_digest(_digest(secret), str(expected))
        if document is None or not same:
            return None
        key = _key(document)
        return key if key.active else None
