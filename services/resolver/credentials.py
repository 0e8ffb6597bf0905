"""Reading the actor from a request's credentials.

Teams sends a skypetoken (``Authentication: skypetoken=…`` or ``X-Skypetoken: …``), an
AAD bearer token (``Authorization: Bearer …``), or both. Both are JWTs; we read their
claims without verifying signatures (Teams verifies them; we only need to know who
the client claims to be, and a forged token gains nothing that Teams would accept).

Decoding is strict: every way a token can be unreadable is a :class:`TokenProblem`
with a clear reason, never an exception escaping to the caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.common.contracts import Actor, Credential, CredentialStatus, assemble
from services.resolver.ttlcache import TtlCache

MAX_TOKEN_LENGTH = 16 * 1024
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
# An authorization scheme worth naming in a reason (Basic, Negotiate, NTLM …): letters
# only, short, so that no part of a credential is ever repeated.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z_-]{0,15}$")


class TokenProblem(ValueError):
    """A credential that cannot be read; ``reason`` is safe to log and record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Token:
    """One credential found on a request: its kind, raw value and decoded claims."""

    kind: str  # "skypetoken" or "bearer"
    raw: str = field(repr=False)
    claims: dict[str, Any]

    @property
    def expires_at(self) -> float | None:
        exp = self.claims.get("exp")
        return float(exp) if isinstance(exp, int | float) else None


def decode_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT as a dict; raises :class:`TokenProblem` when it is not one."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenProblem(f"token longer than {MAX_TOKEN_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenProblem("opaque token: not a JWT (expected three dot-separated parts)")
    payload = parts[1]
    if not payload or not _B64URL.match(payload):
        raise TokenProblem("JWT payload is not base64url")
    if len(payload) % 4 == 1:
        raise TokenProblem("JWT payload has an impossible base64 length")
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError):
        raise TokenProblem("JWT payload is not base64url") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenProblem("JWT payload is not UTF-8") from None
    try:
        claims = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise TokenProblem("JWT payload is not JSON") from None
    if not isinstance(claims, dict):
        raise TokenProblem("JWT payload is not a JSON object")
    return claims


# A credential found on a request, before decoding: (kind, raw value, header name).
Candidate = tuple[str, str, str]


def _candidates(headers: dict[str, str]) -> list[Candidate | str]:
    """Every credential on a request, before decoding, and in their place the problem
    of each header that looks like a credential but carries none, in header order."""
    found: list[Candidate | str] = []

    authentication = headers.get("authentication")
    if authentication is not None:
        value = authentication.strip()
        if value.lower().startswith("skypetoken="):
            found.append(("skypetoken", value[len("skypetoken=") :].strip(), "Authentication"))
        else:
            found.append("Authentication header does not carry a skypetoken")

    x_skypetoken = headers.get("x-skypetoken")
    if x_skypetoken is not None:
        found.append(("skypetoken", x_skypetoken.strip(), "X-Skypetoken"))

    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            found.append(("bearer", value.strip(), "Authorization"))
        elif scheme.lower() == "skype_token":
            found.append(("skypetoken", value.strip(), "Authorization"))
        elif _SCHEME.match(scheme):
            found.append(f"Authorization scheme {scheme!r} is not Bearer")
        else:
            # A value without a scheme is most likely a bare token: never echo it into
            # the reason, which reaches the decision record and the logs.
            found.append("Authorization header has no scheme (a bare credential?)")
    return found


def _decoded(
    found: list[Candidate | str],
) -> tuple[list[Token], list[str], list[dict[str, Any] | None]]:
    """The tokens of the candidates that decode, every problem in header order, and per
    candidate its claims (None when it cannot be read)."""
    tokens: list[Token] = []
    problems: list[str] = []
    claims_of: list[dict[str, Any] | None] = []
    for item in found:
        if isinstance(item, str):
            problems.append(item)
            continue
        kind, raw, header = item
        claims = _claims(kind, raw, header, problems)
        claims_of.append(claims)
        if claims is not None:
            tokens.append(Token(kind, raw, claims))
    return tokens, problems, claims_of


def extract_tokens(headers: dict[str, str]) -> tuple[list[Token], list[str]]:
    """Every token on a request (lower-case header names) and the problems found.

    A header that looks like a credential but cannot be read is reported as a
    problem rather than ignored, so the caller can fail closed.
    """
    tokens, problems, _ = _decoded(_candidates(headers))
    return tokens, problems


def _claims(kind: str, raw: str, header: str, problems: list[str]) -> dict[str, Any] | None:
    """The claims of one credential, or None with the problem added to ``problems``."""
    if not raw:
        problems.append(f"{header} header is empty")
        return None
    try:
        claims = decode_claims(raw)
    except TokenProblem as exc:
        problems.append(f"{header}: {exc.reason}")
        return None
    # A token of the other kind in this header is a client bug or a forgery attempt.
    if kind == "skypetoken" and "skypeid" not in claims and "oid" in claims:
        problems.append(f"a bearer token in the {header} header, where a skypetoken belongs")
        return None
    if kind == "bearer" and "oid" not in claims and "skypeid" in claims:
        problems.append(f"a skypetoken in the {header} header, where a bearer token belongs")
        return None
    return claims


def _text(claims: dict[str, Any], key: str) -> str | None:
    value = claims.get(key)
    return value if isinstance(value, str) and value else None


def actor_from_tokens(tokens: list[Token]) -> Actor:
    """Merge what the tokens say about the user. Skypetoken gives ``skypeid``/``tid``;
    bearer gives ``oid``/``tid``/``upn``."""
    actor = Actor()
    for token in tokens:
        claims = token.claims
        if token.kind == "skypetoken":
            skypeid = _text(claims, "skypeid")
            if skypeid:
                if skypeid.lower().startswith("orgid:"):
                    object_id = skypeid[len("orgid:") :].lower()
                    actor.oid = actor.oid or object_id
                    actor.mri = actor.mri or f"8:orgid:{object_id}"
                else:
                    actor.mri = actor.mri or f"8:{skypeid}"
            actor.region = actor.region or _text(claims, "rgn")
        else:
            oid = _text(claims, "oid")
            if oid:
                actor.oid = actor.oid or oid.lower()
                actor.mri = actor.mri or f"8:orgid:{oid.lower()}"
            upn = _text(claims, "upn") or _text(claims, "unique_name")
            if upn:
                actor.upn = actor.upn or upn.lower()
            email = _text(claims, "email")
            if email:
                actor.email = actor.email or email.lower()
        tid = _text(claims, "tid")
        if tid:
            actor.tenant_id = actor.tenant_id or tid.lower()
    return actor


# The claims the resolver reads from a request's tokens: who the actor is, the tenant,
# the region, what a token is for and when it expires.
USED_CLAIMS = ("aud", "email", "exp", "oid", "rgn", "skypeid", "tid", "unique_name", "upn")

# What read_credentials concluded for recent credentials (a client sends the same token
# with every request until it renews it), kept under a SHA-256 digest of them. No raw
# token is kept: the tokens a caller gets back are rebuilt from the request in hand.
# Kept only for credentials of plain shape and modest size (real tokens are 1-3 KB), so
# that what clients send cannot make it large: at most _MEMO_SIZE readings (the least
# recently used go first) of at most _MEMO_CREDENTIAL_CHARS characters each. A reading
# does not depend on the time, so it is kept until pushed out.
_MEMO_SIZE = 2048
_MEMO_CREDENTIAL_CHARS = 8192
_MEMO_LIST_ITEMS = 16
_Reading = tuple[Actor, Credential, tuple[dict[str, Any] | None, ...]]
_readings: TtlCache[_Reading] = TtlCache(_MEMO_SIZE)


def read_credentials(headers: dict[str, str]) -> tuple[Actor, Credential, list[Token]]:
    """The actor and a token-free summary of the credentials on a request, and its
    tokens with the claims the resolver reads (``USED_CLAIMS``).

    A pure function of the three credential headers; the conclusion for recent ones is
    kept (see ``_readings``), and each call gets models of its own."""
    found = _candidates(headers)
    candidates = [item for item in found if not isinstance(item, str)]
    digest = _digest(found)
    reading = _readings.get(digest)
    if reading is None:
        reading = _read(found)
        if _keepable(candidates, reading):
            _readings.put(digest, reading, math.inf)
    actor, credential, claims = reading
    tokens = [
        Token(kind, raw, dict(known))
        for (kind, raw, _), known in zip(candidates, claims, strict=True)
        if known is not None
    ]
    # Copies of the kept models, assembled from their own (valid) fields: the event
    # they join is changed later (the actor's profile is added to it).
    fields = dict(vars(credential))
    fields["kinds"] = list(credential.kinds)
    return assemble(Actor, dict(vars(actor))), assemble(Credential, fields), tokens


def _digest(found: list[Candidate | str]) -> str:
    """A digest of the candidates and problems, in order, each part length-prefixed so
    that no header value can make two different sets of headers read the same."""
    parts: list[str] = []
    for item in found:
        fields = (item,) if isinstance(item, str) else item
        parts.append(f"{len(fields)}|")
        parts.extend(f"{len(field)}:{field}" for field in fields)
    return hashlib.sha256("".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _keepable(candidates: list[Candidate], reading: _Reading) -> bool:
    """Small enough and plain enough to keep: see ``_readings``."""
    if sum(len(raw) for _, raw, _ in candidates) > _MEMO_CREDENTIAL_CHARS:
        return False
    for claims in reading[2]:
        for value in (claims or {}).values():
            if isinstance(value, list):
                if len(value) > _MEMO_LIST_ITEMS or not all(map(_scalar, value)):
                    return False
            elif not _scalar(value):
                return False
    return True


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _read(found: list[Candidate | str]) -> _Reading:
    """The actor, the credential summary and, per candidate, the claims the resolver
    reads (None for a candidate that cannot be read)."""
    tokens, problems, claims_of = _decoded(found)
    claims = tuple(None if known is None else _used(known) for known in claims_of)
    kinds = sorted({token.kind for token in tokens})
    if not tokens and not problems:
        missing = Credential(status=CredentialStatus.MISSING, reason="no credentials")
        return Actor(), missing, claims
    actor = actor_from_tokens(tokens)
    if actor.mri is None or actor.tenant_id is None:
        reason = "; ".join(problems) if problems else "token claims name no user or no tenant"
        status = Credential(status=CredentialStatus.UNREADABLE, kinds=kinds, reason=reason)
        return actor, status, claims
    # Claims are whatever the client put in the token: only text counts (a list or an
    # object where an id belongs is ignored, as actor_from_tokens ignores it).
    oids = {
        _text(t.claims, "oid") or (_text(t.claims, "skypeid") or "").lower().removeprefix("orgid:")
        for t in tokens
    }
    if len({o.lower() for o in oids if o}) > 1:
        reason = "tokens name different users"
        status = Credential(status=CredentialStatus.UNREADABLE, kinds=kinds, reason=reason)
        return actor, status, claims
    expiries = [t.expires_at for t in tokens if t.expires_at is not None]
    status = Credential(
        status=CredentialStatus.OK,
        kinds=kinds,
        reason="; ".join(problems) or None,
        expires_at=min(expiries) if expiries else None,
    )
    return actor, status, claims


def _used(claims: dict[str, Any]) -> dict[str, Any]:
    return {key: claims[key] for key in USED_CLAIMS if key in claims}
