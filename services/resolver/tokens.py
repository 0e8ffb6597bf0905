"""The token vault: every Teams token the resolver learns, kept encrypted.

Tokens are kept per user, per client session and per purpose (``chatsvc`` for the
chat service, ``mt`` for the middle tier), sealed with AES-GCM under a key from the
environment or a Secret. The associated data binds each ciphertext to its user,
session and purpose, so a sealed token copied onto another user's record will not
open. Tokens are never logged; their ``repr`` hides them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.resolver.credentials import Token

log = logging.getLogger(__name__)

CHATSVC = "chatsvc"
MIDDLE_TIER = "mt"
SPACES_AUDIENCE = "https://api.spaces.skype.com"
IC3_AUDIENCES = ("https://ic3.teams.office.com", "https://chatsvcagg.teams.microsoft.com")
_NONCE_BYTES = 12


def new_key() -> bytes:
    """A fresh random 256-bit key (development only: tokens die with the process)."""
    return AESGCM.generate_key(bit_length=256)


def purpose_of(token: Token) -> str | None:
    """What a token may be used for: the chat service, the middle tier, or nothing."""
    if token.kind == "skypetoken":
        return CHATSVC
    audience = token.claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    for aud in audiences:
        if not isinstance(aud, str):
            continue
        normal = aud.lower().rstrip("/")
        if normal.startswith(SPACES_AUDIENCE):
            return MIDDLE_TIER
        if normal in IC3_AUDIENCES or normal.startswith("https://ic3.teams.office.com"):
            return CHATSVC
    return None


def user_of(token: Token) -> str | None:
    """The user a token belongs to: the AAD object id (lower case), or the consumer id."""
    if token.kind == "skypetoken":
        skypeid = token.claims.get("skypeid")
        if isinstance(skypeid, str) and skypeid:
            return skypeid.removeprefix("orgid:").lower()
        return None
    oid = token.claims.get("oid")
    return oid.lower() if isinstance(oid, str) and oid else None


@dataclass(slots=True)
class SealedToken:
    """One stored token: who, which session, what for, and the ciphertext."""

    user: str
    session: str
    purpose: str
    kind: str
    expires_at: float
    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)
    tenant_id: str | None = None

    @property
    def key(self) -> str:
        return token_id(self.user, self.session, self.purpose)

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.key,
            "user": self.user,
            "session": self.session,
            "purpose": self.purpose,
            "kind": self.kind,
            "tenant_id": self.tenant_id,
            "expires_at_s": self.expires_at,
            "nonce": self.nonce,
            "ciphertext": self.ciphertext,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> SealedToken:
        return cls(
            user=str(doc["user"]),
            session=str(doc["session"]),
            purpose=str(doc["purpose"]),
            kind=str(doc["kind"]),
            expires_at=float(doc["expires_at_s"]),
            nonce=bytes(doc["nonce"]),
            ciphertext=bytes(doc["ciphertext"]),
            tenant_id=doc.get("tenant_id"),
        )


def token_id(user: str, session: str, purpose: str) -> str:
    """A stable record id; the session id is hashed so it is not readable in the store."""
    digest = hashlib.sha256(f"{user}|{session}|{purpose}".encode()).hexdigest()[:32]
    return f"{user}:{purpose}:{digest}"


def session_of(headers: dict[str, str], token: Token) -> str:
    """The client session a token belongs to: ``x-ms-session-id`` when the client sent
    one, else a digest of the token itself (new clients may not send the header)."""
    session = headers.get("x-ms-session-id", "").strip()
    if session:
        return session[:128]
    return "t:" + hashlib.sha256(token.raw.encode()).hexdigest()[:24]


class TokenCipher:
    """AES-GCM sealing with associated data binding the token to its record."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(
        self, token: Token, user: str, session: str, purpose: str, tenant_id: str | None
    ) -> SealedToken:
        nonce = os.urandom(_NONCE_BYTES)
        associated = f"{user}|{session}|{purpose}".encode()
        ciphertext = self._aead.encrypt(nonce, token.raw.encode(), associated)
        expires = token.expires_at or (time.time() + 3600)
        return SealedToken(
            user, session, purpose, token.kind, expires, nonce, ciphertext, tenant_id
        )

    def open(self, sealed: SealedToken) -> str | None:
        """The raw token, or None when the record was sealed under another key or
        tampered with (such a record is useless and is dropped by the caller)."""
        associated = f"{sealed.user}|{sealed.session}|{sealed.purpose}".encode()
        try:
            return self._aead.decrypt(sealed.nonce, sealed.ciphertext, associated).decode()
        except (InvalidTag, ValueError, UnicodeDecodeError):
            return None
